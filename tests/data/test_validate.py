"""The validation layer: one-line errors naming file and line, the declared rating scale,
degenerate domains, and the raw-input fingerprints in the dataset cache key."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cdr.data import store
from cdr.data.amazon import Amazon2023Config, AmazonConfig
from cdr.data.atomic import RecboleAtomicConfig
from cdr.data.movielens import MovieLensGenresConfig
from cdr.data.records import CrossDomainDataset
from cdr.data.splits import cold_start_split, inductive_split
from cdr.data.store import build_dataset, read_dataset, read_manifest
from cdr.data.synthetic import SyntheticConfig
from cdr.errors import DataError, DatasetFormatError
from cdr.registry import Registry

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
TOKENS = "user_id:token\titem_id:token\trating:token\ttimestamp:token\n"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOOD = "u1\ti1\t5\t10\nu2\ti2\t3\t11\n"
MUSIC = "user_id:token\titem_id:token\nu1\tm1\nu3\tm2\n"


def atomic_dir(root: Path, books: str, music: str = MUSIC) -> Path:
    (root / "books").mkdir(parents=True, exist_ok=True)
    (root / "books" / "books.inter").write_text(books)
    (root / "music.inter").write_text(music)
    return root


def load_atomic(root: Path, **kw: Any) -> CrossDomainDataset:
    cfg = RecboleAtomicConfig(directory=str(root), source="books", target="music", **kw)
    dataset: CrossDomainDataset = Registry().get("datasets", "recbole-atomic").build(
        cfg, None).load()
    return dataset


def one_line_error(exc: pytest.ExceptionInfo[BaseException], name: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and name in text, text
    return text


@pytest.mark.parametrize(("books", "message"), [
    (TOKENS + "u1\ti1\tabc\t10\n", r"books\.inter:2: rating 'abc' is not a number$"),
    (TOKENS + "u1\ti1\ttrue\t10\n", r"books\.inter:2: rating 'true' is not a number$"),
    (TOKENS + "u1\ti1\t\t10\n", r"books\.inter:2: rating '' is not a number$"),
    (HEADER + "u1\ti1\t5\t1\nu1\ti2\tnan\t1\n", r"books\.inter:3: rating nan is not a finite"),
    (HEADER + "u1\ti1\tinf\t1\n", r"books\.inter:2: rating inf is not a finite number"),
    (HEADER + "u1\ti1\t999999\t1\n",
     r"books\.inter:2: rating 999999 is outside the declared scale \[1, 5\]"),
    (HEADER + "u1\ti1\t-1\t1\n", r"books\.inter:2: rating -1 is outside the declared scale"),
    (HEADER + "\nu1\ti1\t1e308\t1\n", r"books\.inter:3: rating 1e\+308 is outside"),
    (TOKENS + "u1\ti1\t5\t1180591620717411303424\n",
     r"books\.inter:2: timestamp '1180591620717411303424' does not fit in int64"),
    (HEADER + "u1\ti1\t5\t1e30\n", r"books\.inter:2: timestamp 1e\+30 does not fit in int64"),
    (HEADER + "u1\ti1\t5\t1\nu1\ti2\t5\t9223372036854775808\n",
     r"books\.inter:3: timestamp 9\.223372036854776e\+18 does not fit in int64"),
    (HEADER + "u1\ti1\t5\tnan\n", r"books\.inter:2: timestamp nan is not a number"),
    (HEADER + "u1\ti1\t5\tinf\n", r"books\.inter:2: timestamp inf does not fit in int64"),
    (HEADER + "u1\ti1\t5\t-1\n", r"books\.inter:2: timestamp -1\.0 is negative"),
    (TOKENS + "u1\ti1\t5\tyesterday\n", r"books\.inter:2: timestamp 'yesterday' is not a num"),
    (HEADER + "u1\ti1\t5\t1\n \ti2\t5\t1\n", r"books\.inter:3: empty user_id ' '"),
    (HEADER + "u1\t\t5\t1\n", r"books\.inter:2: empty item_id ''"),
    (HEADER + "u1\x00\ti1\t5\t1\n",
     r"books\.inter:2: user_id 'u1\\x00' holds a control character"),
    (HEADER + "u1\ti1\t5\n", r"books\.inter:2: expected 4 tab-separated fields, got 3"),
    ("user_id:token\tuser_id:token\n", r"books\.inter:1: header field 'user_id' appears twice"),
    ("user_id:token\trating:float\nu1\t5\n", r"books\.inter: no field 'item_id'"),
    (HEADER, r"books\.inter: no data rows, so domain 'books' has no interactions"),
    ("", r"books\.inter:1: empty file"),
])
def test_atomic_bad_values_are_one_line_errors(tmp_path: Path, books: str,
                                               message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message) as exc:
        load_atomic(atomic_dir(tmp_path, books))
    one_line_error(exc, "books.inter")


def test_atomic_bytes_and_directories(tmp_path: Path) -> None:
    root = atomic_dir(tmp_path, HEADER + GOOD)
    (root / "books" / "books.inter").write_bytes((HEADER + "u1\ti1\t5\t1\nu\xe9\ti2\t5\t1\n")
                                                 .encode("latin-1"))
    with pytest.raises(DatasetFormatError, match=r"books\.inter:3: not UTF-8 text \(byte 0xe9"):
        load_atomic(root)
    # a byte-order mark and CRLF line ends are fine; U+0085 / U+2028 inside a field split
    # nothing (str.splitlines would)
    (root / "books" / "books.inter").write_bytes(
        b"\xef\xbb\xbf" + (HEADER + "u1\ti\x851\t5\t1\r\nu2\ti\u20282\t4\t2\r\n").encode())
    ds = load_atomic(root)
    assert ds.source.item_ids == ("i\x851", "i\u20282")
    (root / "music.inter").unlink()
    (root / "music.inter").mkdir()  # a directory where a file should be: not found as one
    with pytest.raises(DataError, match=r"no music\.inter under"):
        load_atomic(root)


def test_ratings_in_a_declared_scale_or_clipped(tmp_path: Path) -> None:
    root = atomic_dir(tmp_path, HEADER + "u1\ti1\t10\t1\nu2\ti2\t0\t2\nu2\ti1\t7\t3\n")
    with pytest.raises(DatasetFormatError, match=r"books\.inter:2: rating 10 is outside "
                       r"the declared scale \[1, 5\]") as exc:
        load_atomic(root)
    assert exc.value.hint is not None and "clip_ratings" in exc.value.hint
    assert load_atomic(root, rating_max=10.0, rating_min=0.0).source.interactions.rating.tolist() \
        == [10.0, 0.0, 7.0]
    clipped = load_atomic(root, clip_ratings=True)
    assert clipped.source.interactions.rating.tolist() == [5.0, 1.0, 5.0]
    assert clipped.source.clipped_ratings == 3 and clipped.target.clipped_ratings == 0
    cfg = RecboleAtomicConfig(directory=str(root), source="books", target="music",
                              clip_ratings=True)
    path = build_dataset(cfg, Registry(), cache_root=tmp_path / "cache")
    manifest = read_manifest(path)
    assert manifest["counts"]["source"]["clipped_ratings"] == 3
    assert manifest["filters"][0] == {"filter": "3 rating(s) clipped into [1, 5]",
                                      "domain": "books", "removed_interactions": 0,
                                      "removed_items": 0}
    assert read_dataset(path).source.clipped_ratings == 3


@pytest.mark.parametrize(("fields", "message"), [
    ({"rating_min": 5.0, "rating_max": 1.0}, r"rating_max: 1\.0 must be > rating_min"),
    ({"rating_max": float("nan")}, "rating_max: nan must be a finite number"),
    ({"rating_min": float("-inf")}, "rating_min: -inf must be a finite number"),
])
@pytest.mark.parametrize("cls", [RecboleAtomicConfig, AmazonConfig, Amazon2023Config,
                                 MovieLensGenresConfig])
def test_declared_scale_is_validated(cls: Any, fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**fields)


def amazon_dir(tmp_path: Path, version: str, line: dict[str, Any] | str) -> Path:
    directory = tmp_path / f"a{version}"
    shutil.copytree(FIXTURES / f"amazon{version}", directory)
    name = "CDs_and_Vinyl.json" if version == "2018" else "CDs_and_Vinyl.jsonl"
    with (directory / name).open("a") as fh:
        fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return directory


def load_amazon(cfg: AmazonConfig) -> CrossDomainDataset:
    dataset: CrossDomainDataset = Registry().get("datasets", cfg.kind).build(cfg, None).load()
    return dataset


REVIEW_2018 = {"reviewerID": "X", "asin": "B00CD01", "overall": 5.0, "unixReviewTime": 1}


@pytest.mark.parametrize(("change", "message"), [
    ({"overall": float("nan")}, r"CDs_and_Vinyl\.json:5: overall nan is not a finite number"),
    ({"overall": float("inf")}, r"CDs_and_Vinyl\.json:5: overall inf is not a finite number"),
    ({"overall": 6}, r"CDs_and_Vinyl\.json:5: overall 6 is outside the declared scale"),
    ({"overall": 10**400}, r"CDs_and_Vinyl\.json:5: overall 1000.*\.\.\. is too large"),
    ({"unixReviewTime": 2**70}, r"CDs_and_Vinyl\.json:5: unixReviewTime 1180591620717411303424 "
                                "does not fit in int64"),
    ({"unixReviewTime": float("nan")}, r"CDs_and_Vinyl\.json:5: unixReviewTime nan is not a"),
    ({"unixReviewTime": -1}, r"CDs_and_Vinyl\.json:5: unixReviewTime -1 is negative"),
    ({"reviewerID": "  "}, r"CDs_and_Vinyl\.json:5: empty reviewerID"),
    ({"overall": True}, r"CDs_and_Vinyl\.json:5: field 'overall' has type bool"),
])
def test_amazon_bad_values_are_one_line_errors(tmp_path: Path, change: dict[str, Any],
                                               message: str) -> None:
    directory = amazon_dir(tmp_path, "2018", {**REVIEW_2018, **change})
    with pytest.raises(DatasetFormatError, match=message) as exc:
        load_amazon(AmazonConfig(directory=str(directory)))
    one_line_error(exc, "CDs_and_Vinyl.json")
    skipped = load_amazon(AmazonConfig(directory=str(directory), skip_malformed=True))
    assert len(skipped.target.interactions) == 4


def test_amazon_2023_milliseconds_overflow_and_clipping(tmp_path: Path) -> None:
    line = {"user_id": "X", "parent_asin": "B00CD01", "rating": 0.0, "timestamp": 2**63 * 1000}
    directory = amazon_dir(tmp_path, "2023", line)
    with pytest.raises(DatasetFormatError, match=r"jsonl:5: rating 0 is outside"):
        load_amazon(Amazon2023Config(directory=str(directory)))
    with pytest.raises(DatasetFormatError, match=r"jsonl:5: timestamp 9223372036854775808000 "
                       "does not fit in int64"):
        load_amazon(Amazon2023Config(directory=str(directory), clip_ratings=True))
    directory = amazon_dir(tmp_path / "b", "2023", {**line, "timestamp": 1_500_000_000_999})
    ds = load_amazon(Amazon2023Config(directory=str(directory), clip_ratings=True))
    assert ds.target.clipped_ratings == 1 and float(ds.target.interactions.rating.min()) == 1.0
    assert int(ds.target.interactions.timestamp.max()) == 1_500_000_000


def _gzip_fixture(tmp_path: Path) -> Path:
    directory = tmp_path / "gz"
    directory.mkdir()
    for file in (FIXTURES / "amazon2023").iterdir():
        (directory / f"{file.name}.gz").write_bytes(gzip.compress(file.read_bytes(), mtime=0))
    return directory


@pytest.mark.parametrize("damage", ["truncate", "flip", "tail", "block", "magic"])
def test_corrupt_gzip_is_a_one_line_error(tmp_path: Path, damage: str) -> None:
    directory = _gzip_fixture(tmp_path)
    target = directory / "CDs_and_Vinyl.jsonl.gz"
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "tail":
        data[-6] ^= 0x01  # the CRC / length trailer
    elif damage == "block":
        data[10] = 0x07  # first deflate block header: BTYPE 11 is invalid (zlib.error)
    else:
        data[3] = 0xFF  # reserved flag bits set (BadGzipFile)
    target.write_bytes(bytes(data))
    with pytest.raises(DatasetFormatError, match=r"CDs_and_Vinyl\.jsonl\.gz:\d+: ") as exc:
        load_amazon(Amazon2023Config(directory=str(directory)))
    one_line_error(exc, "CDs_and_Vinyl.jsonl.gz")


def test_amazon_non_utf8_json_and_directories(tmp_path: Path) -> None:
    directory = amazon_dir(tmp_path, "2018", '{"reviewerID": "X\xe9"}')
    path = directory / "CDs_and_Vinyl.json"
    path.write_bytes(path.read_bytes().replace("X\xe9".encode(), b"X\xe9"))
    with pytest.raises(DatasetFormatError, match=r"CDs_and_Vinyl\.json:5: not UTF-8 text"):
        load_amazon(AmazonConfig(directory=str(directory)))
    deep = amazon_dir(tmp_path / "d", "2018", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetFormatError, match=r"CDs_and_Vinyl\.json:5: malformed JSON"):
        load_amazon(AmazonConfig(directory=str(deep)))
    lone = amazon_dir(tmp_path / "s", "2018", '{"reviewerID": "\\ud800", "asin": "B1", '
                      '"overall": 5}')
    with pytest.raises(DatasetFormatError, match=r"CDs_and_Vinyl\.json:5: a string holds an "
                       "unpaired UTF-16 surrogate"):
        load_amazon(AmazonConfig(directory=str(lone)))
    paired = amazon_dir(tmp_path / "p", "2018", '{"reviewerID": "\\ud83d\\ude00", '
                        '"asin": "B00CD02", "overall": 5}')
    assert "\U0001f600" in load_amazon(AmazonConfig(directory=str(paired))).user_ids
    digits = amazon_dir(tmp_path / "n", "2018", '{"overall": ' + "9" * 5000 + "}")
    with pytest.raises(DatasetFormatError, match=r"CDs_and_Vinyl\.json:5: malformed JSON"):
        load_amazon(AmazonConfig(directory=str(digits)))


def movielens_dir(tmp_path: Path, inter: str) -> Path:
    directory = tmp_path / "ml"
    directory.mkdir(exist_ok=True)
    (directory / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tComedy\n2\tHeat\t1995\tDrama\n3\tBabe\t1995\tComedy\n"
        "4\tCasino\t1995\tDrama\n")
    (directory / "ml-100k.inter").write_text(inter)
    return directory


ML_GOOD = HEADER + "1\t1\t5\t10\n1\t2\t4\t11\n2\t3\t3\t12\n2\t4\t2\t13\n"


def test_movielens_values_are_validated(tmp_path: Path) -> None:
    registry = Registry()
    directory = movielens_dir(tmp_path, ML_GOOD + "3\t1\tnan\t1\n")
    with pytest.raises(DatasetFormatError, match=r"ml-100k\.inter:6: rating nan is not a fin"):
        registry.get("datasets", "ml-100k-genres").build(
            MovieLensGenresConfig(directory=str(directory)), None).load()
    directory = movielens_dir(tmp_path, ML_GOOD + "3\t1\t5\t1e19\n")
    with pytest.raises(DatasetFormatError, match=r"ml-100k\.inter:6: timestamp 1e\+19 does not"):
        registry.get("datasets", "ml-100k-genres").build(
            MovieLensGenresConfig(directory=str(directory)), None).load()
    directory = movielens_dir(tmp_path, ML_GOOD + "3\t1\t6\t1\n")
    cfg = MovieLensGenresConfig(directory=str(directory), clip_ratings=True)
    path = build_dataset(cfg, registry, cache_root=tmp_path / "cache")
    assert read_manifest(path)["counts"]["source"]["clipped_ratings"] == 1
    (directory / "ml-100k.inter").unlink()
    (directory / "ml-100k.inter").mkdir()
    with pytest.raises(DatasetFormatError, match=r"ml-100k\.inter: is a directory"):
        build_dataset(cfg, registry, cache_root=tmp_path / "cache2")
    assert not (tmp_path / "cache2").exists()


def test_domains_that_cannot_be_ranked_are_refused(tmp_path: Path) -> None:
    root = atomic_dir(tmp_path, HEADER + GOOD, "user_id:token\titem_id:token\nu1\tm1\nu3\tm1\n")
    with pytest.raises(DataError, match="dataset 'books-music': target domain 'music' has "
                       r"interactions with only 1 item\(s\); ranking needs at least 2"):
        load_atomic(root)
    cfg = SyntheticConfig(size="tiny", images=False, target_items=1)
    with pytest.raises(DataError, match="target domain 'movies' has interactions with only 1"):
        build_dataset(cfg, Registry(), cache_root=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_splits_refuse_degenerate_domains(tiny_synthetic: CrossDomainDataset) -> None:
    import attrs

    from cdr.config import SplitConfig

    target = tiny_synthetic.target
    one_item = attrs.evolve(tiny_synthetic, target=attrs.evolve(target, interactions=attrs.evolve(
        target.interactions, item=torch.zeros_like(target.interactions.item))))
    for split in (cold_start_split, inductive_split):
        with pytest.raises(DataError, match="target domain 'movies' has interactions with only"):
            split(one_item, SplitConfig())
    nan = attrs.evolve(tiny_synthetic, source=attrs.evolve(
        tiny_synthetic.source, interactions=attrs.evolve(
            tiny_synthetic.source.interactions,
            rating=torch.full_like(tiny_synthetic.source.interactions.rating, float("nan")))))
    with pytest.raises(DataError, match=r"source domain 'books' has \d+ non-finite rating"):
        cold_start_split(nan, SplitConfig())


def test_a_changed_raw_file_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = atomic_dir(tmp_path / "raw", HEADER + GOOD)
    cfg = RecboleAtomicConfig(directory=str(root), source="books", target="music")
    cache = tmp_path / "cache"
    registry = Registry()
    first = build_dataset(cfg, registry, cache_root=cache)
    assert read_dataset(first).source.interactions.rating.tolist() == [5.0, 3.0]
    inputs = read_manifest(first)["inputs"]
    assert [Path(i["path"]).name for i in inputs] == ["books.inter", "music.inter"]
    assert all(len(i["sha256"]) == 64 and i["size"] > 0 for i in inputs)
    hashed: list[Path] = []
    real = store._sha256

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(store, "_sha256", counting)
    assert build_dataset(cfg, registry, cache_root=cache) == first
    assert hashed == []  # unchanged files: remembered by their stat, not re-hashed
    (root / "books" / "books.inter").write_text(HEADER + "u1\ti1\t2\t10\nu2\ti2\t3\t11\n")
    second = build_dataset(cfg, registry, cache_root=cache)
    assert second != first and hashed == [root / "books" / "books.inter"]
    assert read_dataset(second).source.interactions.rating.tolist() == [2.0, 3.0]
    # the same content again is the first build again (content, not mtime, is the key)
    (root / "books" / "books.inter").write_text(HEADER + GOOD)
    assert build_dataset(cfg, registry, cache_root=cache) == first


def test_a_file_changed_during_the_build_is_refused(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = atomic_dir(tmp_path / "raw", HEADER + GOOD)
    cfg = RecboleAtomicConfig(directory=str(root), source="books", target="music")
    provider_cls = type(Registry().get("datasets", "recbole-atomic").build(cfg, None))
    real = provider_cls.load

    def load_then_edit(self: Any, reporter: Any = None) -> CrossDomainDataset:
        out: CrossDomainDataset = real(self, reporter)
        (root / "music.inter").write_text(MUSIC + "u4\tm1\n")
        return out

    monkeypatch.setattr(provider_cls, "load", load_then_edit)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"music\.inter: changed while the dataset was being"):
        build_dataset(cfg, Registry(), cache_root=cache)
    assert list(cache.iterdir()) == []
