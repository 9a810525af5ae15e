"""Generated bad inputs for every loader: a build ends in a clean load or a clean error.

For each input kind (RecBole atomic files, Amazon 2018 and 2023 JSON lines, plain and
gzipped, MovieLens-style atomic files) a small valid directory is damaged: truncated at a
random offset, bytes flipped, one field's value swapped for an extreme or mistyped one
(1e308, -1, 2**70, nan, inf, '', 'true', ...), a file emptied or replaced by a directory. The
dataset is then built through the store into a fresh cache directory, and the outcome must
be one of:

* a clean load: every rating finite and in the declared scale, timestamps in int64 and
  non-negative, ids non-empty and unique, indices in range, both domains rankable;
* a ``CdrError`` whose message is one line naming the damaged file (or, when no line is
  at fault, e.g. truncation that leaves a domain with one item, naming the dataset and
  domain), with nothing left in the cache directory.

Any other exception fails the test. The cases tried per input kind are counted and printed
in the terminal summary (``conftest.pytest_terminal_summary``).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdr.components import DatasetConfig
from cdr.data.amazon import Amazon2023Config, AmazonConfig
from cdr.data.atomic import RecboleAtomicConfig
from cdr.data.movielens import MovieLensGenresConfig
from cdr.data.store import MANIFEST, build_dataset, read_dataset
from cdr.data.validate import MIN_ITEMS
from cdr.errors import CdrError, DataError, DatasetFormatError
from cdr.registry import Registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REGISTRY = Registry()
#: (input kind, outcome) -> cases tried; printed by conftest.pytest_terminal_summary
CASES: Counter[tuple[str, str]] = Counter()
#: examples per hypothesis test (and input kind); raise it for a longer fuzzing run
EXAMPLES = int(os.environ.get("CDR_BAD_INPUT_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ATOMIC_FILES = {
    "books/books.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                         "u1\tb1\t5\t1420070400\nu1\tb2\t3\t1420070401\nu2\tb1\t4\t1420070402\n"
                         "u3\tb3\t1\t1420070403\nu4\tb2\t2\t1420070404\n",
    "books/books.item": "item_id:token\ttitle:token_seq\tcategories:token_seq\n"
                        "b1\tA Book\tfiction\nb2\tOther Book\tpoetry drama\nb3\tThird\tx\n",
    "music.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token\n"
                   "u1\tm1\t4\t1420070400\tnice\nu2\tm2\t5\t1420070401\tgreat\n"
                   "u5\tm1\t3\t1420070402\tok\nu5\tm3\t2\t1420070403\tmeh\n",
}
MOVIELENS_FILES = {
    "ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n"
                     "2\t3\t1\t881250952\n3\t4\t2\t881250953\n3\t2\t5\t881250954\n"
                     "4\t5\t4\t881250955\n",
    "ml-100k.item": "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                    "1\tToy Story\t1995\tAnimation Comedy\n2\tHeat\t1995\tAction Drama\n"
                    "3\tBabe\t1995\tComedy\n4\tCasino\t1995\tDrama\n5\tClerks\t1994\tComedy\n",
}


def _amazon_files(version: str) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted((FIXTURES / f"amazon{version}").iterdir())}


#: input kind -> (files by relative path, config for a directory, gzip the files)
KINDS: dict[str, tuple[dict[str, str], Callable[[str], DatasetConfig], bool]] = {
    "atomic": (ATOMIC_FILES, lambda d: RecboleAtomicConfig(directory=d, source="books",
                                                           target="music"), False),
    "amazon2018": (_amazon_files("2018"), lambda d: AmazonConfig(directory=d), False),
    "amazon2023": (_amazon_files("2023"), lambda d: Amazon2023Config(directory=d), False),
    "amazon2023.gz": (_amazon_files("2023"), lambda d: Amazon2023Config(directory=d), True),
    "movielens": (MOVIELENS_FILES, lambda d: MovieLensGenresConfig(directory=d), False),
}
TEXT_KINDS = ("atomic", "amazon2018", "amazon2023", "movielens")

EXTREME_TOKENS = ("1e308", "-1e308", "-1", "0", str(2**70), str(2**63), "nan", "NaN", "inf",
                  "-inf", "", " ", "true", "abc", "5", "1.5", "1e-308", "9" * 40, "\x00",
                  "0x10", "1_000", "b1", "u1", "user_id:token", "item_id:token",
                  "rating:token", "rating:float_seq", "timestamp:token", "timestamp:float")
EXTREME_VALUES: tuple[Any, ...] = (1e308, -1e308, -1, 0, 2**70, 2**63, 10**30, math.nan,
                                   math.inf, -math.inf, "", " ", True, False, None, "5",
                                   "abc", [], [1], {}, {"a": 1}, 1.5, 5, 1e-308, "A1USER",
                                   "B00CD01")
#: raw JSON text put in place of a value: too many digits for int(), too deep for the
#: parser, tokens Python's json accepts (NaN, Infinity, 1e400 -> inf), a lone surrogate
RAW_JSON = ("9" * 5000, "[" * 5000 + "]" * 5000, "NaN", "-Infinity", "1e400", "-0",
            '"\\ud800"', "tru", "1" * 30)
_RAW = "\x00raw\x00"


def _write(directory: Path, files: dict[str, bytes], gz: bool) -> None:
    for name, data in files.items():
        path = directory / (f"{name}.gz" if gz else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def _check_clean_load(path: Path) -> None:
    ds = read_dataset(path)
    assert len(set(ds.user_ids)) == ds.num_users and all(u.strip() for u in ds.user_ids)
    for domain in (ds.source, ds.target):
        inter = domain.interactions
        assert len(inter) > 0 and domain.num_users == ds.num_users
        assert len(set(domain.item_ids)) == domain.num_items
        assert all(i.strip() for i in domain.item_ids)
        assert len(domain.items) == domain.num_items
        assert int(inter.user.min()) >= 0 and int(inter.user.max()) < ds.num_users
        assert int(inter.item.min()) >= 0 and int(inter.item.max()) < domain.num_items
        assert int(torch.unique(inter.item).numel()) >= MIN_ITEMS
        assert bool(torch.isfinite(inter.rating).all())
        assert float(inter.rating.min()) >= 1.0 and float(inter.rating.max()) <= 5.0
        assert inter.timestamp.dtype == torch.int64 and int(inter.timestamp.min()) >= 0
        assert domain.reviews is None or len(domain.reviews) == len(inter)
        pairs = inter.user * domain.num_items + inter.item
        assert int(torch.unique(pairs).numel()) == len(inter)


def build_outcome(kind: str, files: dict[str, bytes], damaged: str, *,
                  replace_with_dir: bool = False) -> str:
    """Build ``files`` (``damaged`` is the file that was damaged) and check the outcome."""
    _, make_config, gz = KINDS[kind]
    with tempfile.TemporaryDirectory(prefix="cdr-bad-") as tmp:
        raw, cache = Path(tmp) / "raw", Path(tmp) / "cache"
        _write(raw, files, gz)
        name = f"{damaged}.gz" if gz else damaged
        if replace_with_dir:
            (raw / name).unlink()
            (raw / name).mkdir()
        try:
            path = build_dataset(make_config(str(raw)), REGISTRY, cache_root=cache)
        except CdrError as exc:
            text = str(exc)
            assert "\n" not in text and "\r" not in text, text
            file_name = Path(name).name
            if file_name not in text:  # no line at fault: the dataset and domain are named
                assert type(exc) is DataError and text.startswith("dataset '"), text
            leftovers = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
            assert leftovers == [], leftovers
            outcome = "format error" if isinstance(exc, DatasetFormatError) else "data error"
        else:
            _check_clean_load(path)
            assert sorted(p.name for p in cache.iterdir()) == sorted(
                [path.name, ".fingerprints.json"])
            assert (path / MANIFEST).is_file()
            outcome = "clean load"
    CASES[(kind, outcome)] += 1
    return outcome


def _encoded(kind: str) -> dict[str, bytes]:
    return {name: text.encode() for name, text in KINDS[kind][0].items()}


@pytest.mark.parametrize("kind", list(KINDS))
@SETTINGS
@given(data=st.data())
def test_truncated_at_any_offset(kind: str, data: st.DataObject) -> None:
    files = _encoded(kind)
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    if KINDS[kind][2]:  # gzip: truncate the compressed bytes
        compressed = gzip.compress(files[name], mtime=0)
        cut = data.draw(st.integers(0, len(compressed) - 1), label="offset")
        outcome = _build_raw_bytes(kind, files, name, compressed[:cut])
    else:
        cut = data.draw(st.integers(0, len(files[name]) - 1), label="offset")
        files[name] = files[name][:cut]
        outcome = build_outcome(kind, files, name)
    assert outcome


@pytest.mark.parametrize("kind", list(KINDS))
@SETTINGS
@given(data=st.data())
def test_flipped_bytes(kind: str, data: st.DataObject) -> None:
    files = _encoded(kind)
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    gz = KINDS[kind][2]
    blob = bytearray(gzip.compress(files[name], mtime=0) if gz else files[name])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)),
                               min_size=1, max_size=4), label="flips")
    for offset, mask in flips:
        blob[offset] ^= mask
    if gz:
        _build_raw_bytes(kind, files, name, bytes(blob))
    else:
        files[name] = bytes(blob)
        build_outcome(kind, files, name)


def _build_raw_bytes(kind: str, files: dict[str, bytes], name: str, blob: bytes) -> str:
    """Like ``build_outcome`` for gzipped kinds, with ``name``'s compressed bytes = ``blob``."""
    _, make_config, _ = KINDS[kind]
    with tempfile.TemporaryDirectory(prefix="cdr-bad-") as tmp:
        raw, cache = Path(tmp) / "raw", Path(tmp) / "cache"
        _write(raw, files, True)
        (raw / f"{name}.gz").write_bytes(blob)
        try:
            path = build_dataset(make_config(str(raw)), REGISTRY, cache_root=cache)
        except CdrError as exc:
            text = str(exc)
            assert "\n" not in text and "\r" not in text, text
            if f"{name}.gz" not in text:
                assert type(exc) is DataError and text.startswith("dataset '"), text
            assert not cache.exists() or list(cache.iterdir()) == []
            outcome = "format error" if isinstance(exc, DatasetFormatError) else "data error"
        else:
            _check_clean_load(path)
            outcome = "clean load"
    CASES[(kind, outcome)] += 1
    return outcome


def _swap_atomic(text: str, data: st.DataObject) -> str:
    lines = text.split("\n")
    row = data.draw(st.integers(0, len(lines) - 2), label="row")  # the last line is ''
    fields = lines[row].split("\t")
    col = data.draw(st.integers(0, len(fields) - 1), label="column")
    fields[col] = data.draw(st.sampled_from(EXTREME_TOKENS) | st.text(max_size=6),
                            label="token")
    lines[row] = "\t".join(fields)
    return "\n".join(lines)


def _swap_json(text: str, data: st.DataObject) -> str:
    lines = [line for line in text.split("\n") if line]
    row = data.draw(st.integers(0, len(lines) - 1), label="row")
    obj = json.loads(lines[row])
    keys = [*sorted(obj), "overall", "rating", "timestamp", "unixReviewTime", "user_id",
            "reviewerID", "asin", "parent_asin"]
    key = data.draw(st.sampled_from(keys), label="key")
    if data.draw(st.booleans(), label="delete") and key in obj:
        del obj[key]
    else:
        obj[key] = data.draw(st.sampled_from(EXTREME_VALUES) | st.text(max_size=6)
                             | st.floats() | st.integers() | st.just(_RAW), label="value")
    lines[row] = json.dumps(obj)  # allow_nan: NaN / Infinity tokens, as some dumps have
    if obj.get(key) == _RAW:
        fragment = data.draw(st.sampled_from(RAW_JSON), label="raw JSON")
        lines[row] = lines[row].replace(json.dumps(_RAW), fragment)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", list(KINDS))
@SETTINGS
@given(data=st.data())
def test_swapped_field_values(kind: str, data: st.DataObject) -> None:
    files = _encoded(kind)
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    text = files[name].decode()
    swap = _swap_json if kind.startswith("amazon") else _swap_atomic
    files[name] = swap(text, data).encode("utf-8", "surrogatepass")
    build_outcome(kind, files, name)


#: the interactions files of each text kind, where every extreme value is tried in every
#: field of the first data row (and, for atomic files, of the header)
INTERACTION_FILES = {
    "atomic": ("books/books.inter", "music.inter"),
    "amazon2018": ("CDs_and_Vinyl.json",),
    "amazon2023": ("CDs_and_Vinyl.jsonl",),
    "movielens": ("ml-100k.inter",),
}
HEADER_TOKENS = ("", "abc", *(t for t in EXTREME_TOKENS if ":" in t))
JSON_FIELDS = {
    "amazon2018": ("reviewerID", "asin", "overall", "unixReviewTime", "reviewText"),
    "amazon2023": ("user_id", "parent_asin", "rating", "timestamp", "text"),
}


def _atomic_variants(text: str) -> list[str]:
    lines = text.split("\n")
    out = []
    for row in (0, 1):
        fields = lines[row].split("\t")
        tokens = EXTREME_TOKENS if row else HEADER_TOKENS
        for col in range(len(fields)):
            for token in tokens:
                changed = list(fields)
                changed[col] = token
                out.append("\n".join([*lines[:row], "\t".join(changed), *lines[row + 1:]]))
    return out


def _json_variants(text: str, fields: tuple[str, ...]) -> list[str]:
    first, rest = text.split("\n", 1)
    out = []
    for key in fields:
        for value in (*EXTREME_VALUES, *RAW_JSON):
            obj = json.loads(first)
            obj[key] = _RAW if value in RAW_JSON and isinstance(value, str) else value
            line = json.dumps(obj)
            if obj[key] == _RAW:
                line = line.replace(json.dumps(_RAW), str(value))
            out.append(f"{line}\n{rest}")
        obj = json.loads(first)
        del obj[key]
        out.append(f"{json.dumps(obj)}\n{rest}")
    return out


@pytest.mark.parametrize("kind", TEXT_KINDS)
def test_every_extreme_value_in_every_interaction_field(kind: str) -> None:
    for name in INTERACTION_FILES[kind]:
        text = KINDS[kind][0][name]
        variants = (_json_variants(text, JSON_FIELDS[kind]) if kind in JSON_FIELDS
                    else _atomic_variants(text))
        for variant in variants:
            files = _encoded(kind)
            files[name] = variant.encode()
            build_outcome(kind, files, name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_empty_files_and_directories(kind: str) -> None:
    for name in sorted(KINDS[kind][0]):
        files = _encoded(kind)
        files[name] = b""
        build_outcome(kind, files, name)
        build_outcome(kind, _encoded(kind), name, replace_with_dir=True)


def test_the_undamaged_inputs_load_cleanly() -> None:
    for kind in KINDS:
        assert build_outcome(kind, _encoded(kind), next(iter(KINDS[kind][0]))) == "clean load"


def bad_input_summary() -> list[str]:
    """Lines for the terminal summary: cases tried per input kind and their outcomes."""
    kinds = sorted({kind for kind, _ in CASES})
    out = []
    for kind in kinds:
        parts = {outcome: n for (k, outcome), n in CASES.items() if k == kind}
        total = sum(parts.values())
        detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(parts.items()))
        out.append(f"{kind}: {total} cases ({detail}); no other exception")
    return out
