"""Bad inputs to serving, generated: damaged bundles, hostile history files, bad CLI args.

Every case ends in one of two ways: a valid result (strict JSON, finite scores, at most k
items, no seen item when seen items are excluded) or a ``CdrError`` whose message is one
line naming the file; never another exception. One small real bundle (a short DDPM run on
the tiny synthetic preset) is built once for the module.

Cases per input kind (hypothesis examples + fixed cases) are the ``*_EXAMPLES`` constants
and the parametrized lists below; the module prints the executed counts at its end.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from serving_support import trained_bundle
from typer.testing import CliRunner

from cdr.errors import BundleError, CdrError, InputError, RunError
from cdr.registry import Registry
from cdr.serving import schema
from cdr.serving.bundle import Recommendation, Recommender, dumps, export_bundle
from cdr.serving.history import MAX_RATING, read_history

# hypothesis examples per input kind
BUNDLE_BYTES_EXAMPLES = 50  # per test: truncation, byte flips
MEMBER_EXAMPLES = 60  # per test: tensor swaps, meta.json type swaps, member replacement
HISTORY_EXAMPLES = 80  # per test: JSON histories, CSV histories, raw bytes


def examples(n: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


REGISTRY = Registry()
BIG_K = 10**6
CASES: Counter[str] = Counter()  # executed cases per input kind (printed at module end)
OUTCOMES: Counter[tuple[str, str]] = Counter()  # (kind, "ok" | "error") of generated cases


def _record(kind: str, outcome: str) -> None:
    CASES[kind] += 1
    OUTCOMES[kind, outcome] += 1


@attrs.frozen
class Served:
    """The module's real bundle: path, bytes, members, and facts to check results against."""

    run_dir: Path
    path: Path
    data: bytes
    members: dict[str, bytes]
    seen: dict[str, set[str]]
    source_ids: tuple[str, ...]
    workdir: Path
    model: Recommender


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("bad_inputs")
    run_dir, path = trained_bundle(root, REGISTRY)
    data = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    assert set(members) == {"meta.json", "tensors.safetensors", "generator.safetensors"}
    workdir = root / "cases"
    workdir.mkdir()
    source_ids = tuple(_meta(members)["source_item_ids"])
    model = Recommender.load(path, REGISTRY)
    yield Served(run_dir, path, data, members, _seen(members), source_ids, workdir, model)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        shown = ", ".join(
            f"{kind} {n} ({OUTCOMES[kind, 'ok']} served, {OUTCOMES[kind, 'error']} refused)"
            for kind, n in sorted(CASES.items())
        )
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nbad-input cases: {shown}; total {sum(CASES.values())}")


def _meta(members: dict[str, bytes]) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(members["meta.json"])
    return meta


def _seen(members: dict[str, bytes]) -> dict[str, set[str]]:
    """user id -> ids of the target items they have seen, read straight from the members."""
    meta, tensors = _meta(members), load_tensors(members["tensors.safetensors"])
    seen: dict[str, set[str]] = {}
    for u, i in zip(tensors["seen_user"].tolist(), tensors["seen_item"].tolist(), strict=True):
        seen.setdefault(meta["user_ids"][u], set()).add(meta["target_item_ids"][i])
    return seen


_counter = iter(range(10**9))


def _fresh(served: Served, suffix: str) -> Path:
    return served.workdir / f"case-{next(_counter)}{suffix}"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _refuse(_: str) -> Any:
    raise AssertionError("NaN or Infinity in the output")


def check_records(
    records: list[Recommendation], k: int, seen: dict[str, set[str]] | None = None
) -> None:
    """A valid result: strict JSON, finite scores, <= k distinct items, no seen item."""
    text = dumps(records)
    json.loads(text, parse_constant=_refuse)
    for rec in records:
        assert len(rec.items) <= k and len(rec.items) == len(rec.scores)
        assert len(set(rec.items)) == len(rec.items)
        assert all(math.isfinite(s) for s in rec.scores)
        assert list(rec.scores) == sorted(rec.scores, reverse=True)
        if seen is not None:
            assert not set(rec.items) & seen.get(rec.user, set()), rec.user


def check_error(exc: CdrError, names: str | Path) -> None:
    """A user error: one line, naming the file (or thing) it is about."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message, message
    assert str(names) in message, (names, message)
    assert len(message) < 1000, message


def exercise(model: Recommender, members: dict[str, bytes] | None) -> None:
    """Serve known users (excluding seen items, k beyond the catalogue) and a cold user."""
    seen = _seen(members) if members is not None else None
    users = model.user_ids[:3]
    if users:
        check_records(model.recommend_known(users, k=BIG_K, exclude_seen=True), BIG_K, seen)
        check_records(model.recommend_known(users, k=3), 3)
    sources = list(model.source_item_index)
    if model.generator is not None and sources:
        cold = model.recommend_cold("newcomer", [(sources[0], 4.0)], k=BIG_K)
        check_records([cold], BIG_K)


def load_outcome(path: Path, members: dict[str, bytes] | None, kind: str) -> str:
    """Load ``path`` and serve from it: "ok", or "error" for a BundleError naming it."""
    try:
        model = Recommender.load(path, REGISTRY)
        exercise(model, members)
    except BundleError as exc:
        check_error(exc, path)
        _record(kind, "error")
        return "error"
    _record(kind, "ok")
    return "ok"


def members_outcome(served: Served, members: dict[str, bytes], kind: str) -> str:
    path = _fresh(served, ".cdr")
    path.write_bytes(_zip(members))
    return load_outcome(path, members, kind)


# ---------------------------------------------------------------- bundle bytes


@examples(BUNDLE_BYTES_EXAMPLES)
@given(cut=st.data())
def test_truncated_bundle_is_a_bundle_error(served: Served, cut: st.DataObject) -> None:
    offset = cut.draw(st.integers(0, len(served.data) - 1), label="offset")
    path = _fresh(served, ".cdr")
    path.write_bytes(served.data[:offset])
    assert load_outcome(path, None, "bundle bytes") == "error"


@examples(BUNDLE_BYTES_EXAMPLES)
@given(data=st.data())
def test_byte_flips_are_caught_or_harmless(served: Served, data: st.DataObject) -> None:
    size = len(served.data)
    where = st.one_of(
        st.integers(0, min(size - 1, 120)),  # the first local header, meta.json's start
        st.integers(max(0, size - 400), size - 1),  # central directory and end record
        st.integers(0, size - 1),
    )
    flips = data.draw(st.lists(st.tuples(where, st.integers(1, 255)), min_size=1, max_size=4))
    damaged = bytearray(served.data)
    for offset, mask in flips:
        damaged[offset] ^= mask
    path = _fresh(served, ".cdr")
    path.write_bytes(bytes(damaged))
    if (
        load_outcome(path, None, "bundle bytes") == "ok"
    ):  # only flips outside any checked content can pass
        with zipfile.ZipFile(path) as zf:
            assert {n: zf.read(n) for n in zf.namelist()} == served.members


def test_not_a_zip_directory_missing_and_empty(served: Served, tmp_path: Path) -> None:
    (tmp_path / "empty.cdr").write_bytes(b"")
    (tmp_path / "text.cdr").write_text("hello")
    (tmp_path / "pickle.cdr").write_bytes(_torch_pickle())
    for path, expected in [
        (tmp_path, "is a directory"),
        (tmp_path / "none.cdr", "no such bundle"),
        (tmp_path / "empty.cdr", "not a cdr bundle"),
        (tmp_path / "text.cdr", "not a cdr bundle"),
        (tmp_path / "pickle.cdr", "unexpected member"),  # torch.save writes a zip of pickles
    ]:
        _record("bundle bytes", "error")
        with pytest.raises(BundleError, match=expected) as info:
            Recommender.load(path, REGISTRY)
        check_error(info.value, path)


def _torch_pickle() -> bytes:
    buffer = io.BytesIO()
    torch.save({"target_items": torch.zeros(2, 2)}, buffer)
    return buffer.getvalue()


# ------------------------------------------------------- bundle members and meta

TENSOR_NAMES = (
    "source_users",
    "target_users",
    "source_items",
    "target_items",
    "fold_in",
    "seen_user",
    "seen_item",
)


def _out_of_range(dtype: torch.dtype, low: bool) -> int | bool:
    """An integer the dtype can hold that no valid index is: -1 (or the max when unsigned)."""
    if dtype == torch.bool:
        return True
    info = torch.iinfo(dtype)
    return -1 if low and info.min < 0 else min(10**9, info.max)


def _mutate(t: torch.Tensor, how: str) -> torch.Tensor | None:
    floating = t.dtype.is_floating_point
    flat = t.clone().reshape(-1)
    if how == "transpose":
        return t.T.contiguous() if t.ndim == 2 else t[None].contiguous()
    if how == "drop_row":
        return t[:-1].contiguous()
    if how == "add_row":
        return torch.cat([t, t[:1]]).contiguous()
    if how == "flatten":
        return t.reshape(-1).contiguous() if t.ndim == 2 else t.reshape(1, -1).contiguous()
    if how == "empty":
        return t[:0].contiguous()
    if how in ("int32", "float64", "float16", "bool", "uint8"):
        return t.to(getattr(torch, how))
    if how == "nan" and flat.numel():
        flat[0] = float("nan") if floating else _out_of_range(t.dtype, low=True)
    elif how == "inf" and flat.numel():
        flat[-1] = float("inf") if floating else _out_of_range(t.dtype, low=False)
    elif how == "huge":
        return t * 1e38 if floating else t + 10**6
    elif how == "negative" and flat.numel():
        flat[0] = -1
    elif how == "delete":
        return None
    return flat.reshape(t.shape)


TENSOR_MUTATIONS = (
    "transpose",
    "drop_row",
    "add_row",
    "flatten",
    "empty",
    "int32",
    "float64",
    "float16",
    "bool",
    "uint8",
    "nan",
    "inf",
    "huge",
    "negative",
    "delete",
)


@examples(MEMBER_EXAMPLES)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(TENSOR_NAMES), st.sampled_from(TENSOR_MUTATIONS)),
        min_size=1,
        max_size=2,
    ),
    rename=st.booleans(),
)
def test_tensor_shape_and_dtype_swaps(
    served: Served, changes: list[tuple[str, str]], rename: bool
) -> None:
    tensors = dict(load_tensors(served.members["tensors.safetensors"]))
    for name, how in changes:
        if name not in tensors:
            continue
        new = _mutate(tensors.pop(name), how)
        if new is not None:
            tensors[f"{name}_x" if rename and how == "delete" else name] = new
    members = {**served.members, "tensors.safetensors": save_tensors(tensors)}
    outcome = members_outcome(served, members, "bundle members")
    if len(changes) == 1:
        [(name, how)] = changes
        breaking = {"drop_row", "add_row", "flatten", "delete", "bool", "nan", "inf"}
        if how in breaking or (how == "transpose" and name != "fold_in"):
            assert outcome == "error", changes  # a shape, dtype, name or value out of bounds


GENERATOR_MUTATIONS = ("transpose", "drop_row", "nan", "inf", "delete", "float64", "empty")


@examples(MEMBER_EXAMPLES // 2)
@given(data=st.data())
def test_generator_state_swaps(served: Served, data: st.DataObject) -> None:
    state = dict(load_tensors(served.members["generator.safetensors"]))
    name = data.draw(st.sampled_from(sorted(state)), label="tensor")
    how = data.draw(st.sampled_from(GENERATOR_MUTATIONS), label="mutation")
    old = state.pop(name)
    new = _mutate(old, how)
    if new is not None:
        state[name] = new
    members = {**served.members, "generator.safetensors": save_tensors(state)}
    outcome = members_outcome(served, members, "bundle members")
    square = old.ndim == 2 and old.shape[0] == old.shape[1]
    if how in {"drop_row", "nan", "inf", "delete", "empty"} or (how == "transpose" and not square):
        assert outcome == "error", (name, how)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, float("nan"), float("inf"), "", "cdr-bundle/1"]),
    st.text(max_size=6),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
META_FIELDS = (
    "format",
    "user_ids",
    "source_item_ids",
    "target_item_ids",
    "generator",
    "generator.kind",
    "generator.dim",
    "generator.in_dim",
    "config",
    "config.generator",
    "config.generator.steps",
    "config.generator.kind",
    "user_ids.0",
    "target_item_ids.-1",
)


def _set_path(meta: dict[str, Any], path: str, value: Any, delete: bool) -> None:
    *parents, last = path.split(".")
    node: Any = meta
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if delete and isinstance(node, dict):
        node.pop(key, None)
    else:
        node[key] = value


@examples(MEMBER_EXAMPLES)
@given(
    field=st.sampled_from(META_FIELDS),
    value=JSON_VALUES,
    delete=st.booleans(),
)
def test_meta_json_type_swaps(served: Served, field: str, value: Any, delete: bool) -> None:
    meta = _meta(served.members)
    _set_path(meta, field, value, delete)
    raw = json.dumps(meta).encode()  # NaN / Infinity literals included, as a tamperer may
    members_outcome(served, {**served.members, "meta.json": raw}, "bundle members")


ID_EDITS = ("drop", "duplicate", "append", "reverse", "empty")


@examples(MEMBER_EXAMPLES // 2)
@given(
    key=st.sampled_from(["user_ids", "source_item_ids", "target_item_ids"]),
    edit=st.sampled_from(ID_EDITS),
)
def test_id_maps_that_disagree_with_the_tensors(served: Served, key: str, edit: str) -> None:
    meta = _meta(served.members)
    ids = meta[key]
    meta[key] = {
        "drop": ids[:-1],
        "duplicate": [*ids[:-1], ids[0]],
        "append": [*ids, "extra"],
        "reverse": ids[::-1],
        "empty": [],
    }[edit]
    members = {**served.members, "meta.json": json.dumps(meta).encode()}
    outcome = members_outcome(served, members, "bundle members")
    assert outcome == ("ok" if edit == "reverse" else "error")


WHOLE_MEMBERS: dict[str, list[tuple[bytes, str]]] = {
    "meta.json": [
        (b"", "meta.json: not valid JSON"),
        (b"not json", "meta.json: not valid JSON"),
        (b"[1, 2]", "meta.json: expected a JSON object, got a list"),
        (b"null", "meta.json: expected a JSON object, got null"),
        (b"42", "meta.json: expected a JSON object, got a number"),
        (b'"cdr-bundle/1"', "meta.json: expected a JSON object, got a string"),
        (b"\xff\xfe{", "meta.json: not UTF-8"),
        (b'{"format": "cdr-bundle/1", "format": "x"}', "key 'format' appears more than once"),
        (b"[" * 100_000, "meta.json: not valid JSON"),
    ],
    "tensors.safetensors": [
        (data, "tensors.safetensors: not a safetensors file")
        for data in (b"", b"garbage", b"\x00" * 16, b"\xff" * 8 + b"{}", _torch_pickle())
    ],
    "generator.safetensors": [
        (data, "generator.safetensors: not a safetensors file")
        for data in (b"", b"garbage", _torch_pickle())
    ],
}
MEMBER_REPLACEMENTS = [
    (name, n) for name, values in WHOLE_MEMBERS.items() for n in range(len(values))
]


@pytest.mark.parametrize(("member", "n"), MEMBER_REPLACEMENTS)
def test_non_json_and_non_safetensors_members(served: Served, member: str, n: int) -> None:
    data, expected = WHOLE_MEMBERS[member][n]
    path = _fresh(served, ".cdr")
    path.write_bytes(_zip({**served.members, member: data}))
    with pytest.raises(BundleError, match=re.escape(expected)) as info:
        Recommender.load(path, REGISTRY)
    check_error(info.value, path)
    _record("bundle members", "error")


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"meta.json"}, id="only-meta"),
        pytest.param({"tensors.safetensors", "generator.safetensors"}, id="no-meta"),
        pytest.param({"meta.json", "tensors.safetensors"}, id="no-generator-weights"),
        pytest.param(set(), id="empty-zip"),
    ],
)
def test_deleted_members(served: Served, members: set[str]) -> None:
    kept = {name: data for name, data in served.members.items() if name in members}
    assert members_outcome(served, kept, "bundle members") == "error"


def test_member_paths_are_never_extracted(served: Served, tmp_path: Path) -> None:
    for name in ("../evil.txt", "/tmp/evil.txt", "meta.json/../x", "sub/meta.json"):
        _record("bundle members", "error")
        path = tmp_path / "inner" / "evil.cdr"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(_zip({**served.members, name: b"boom"}))
        with pytest.raises(BundleError, match="unexpected member") as info:
            Recommender.load(path, REGISTRY)
        check_error(info.value, path)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_zip_bomb_sizes_are_checked_before_reading(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record("bundle members", "error")
    monkeypatch.setitem(schema.MEMBER_LIMITS, "tensors.safetensors", 1 << 20)
    bomb = {**served.members, "tensors.safetensors": b"\x00" * (8 << 20)}  # 8 MiB -> ~8 KiB
    path = tmp_path / "bomb.cdr"
    path.write_bytes(_zip(bomb))
    assert path.stat().st_size < 64 << 10
    with pytest.raises(BundleError, match="over the 1048576-byte limit") as info:
        Recommender.load(path, REGISTRY)
    check_error(info.value, path)


def test_repeated_member_is_refused(served: Served, tmp_path: Path) -> None:
    _record("bundle members", "error")
    path = tmp_path / "twice.cdr"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        for name, data in served.members.items():
            zf.writestr(name, data)
        zf.writestr("meta.json", b"{}")
    with pytest.raises(BundleError, match="more than once"):
        Recommender.load(path, REGISTRY)


def test_overflowing_vectors_never_reach_the_output(served: Served) -> None:
    """Finite but huge vectors whose dot products overflow: an error, not inf scores."""
    _record("bundle members", "error")
    tensors = dict(load_tensors(served.members["tensors.safetensors"]))
    tensors["target_items"] = torch.full_like(tensors["target_items"], 3e38)
    tensors["target_users"] = torch.full_like(tensors["target_users"], 3e38)
    path = _fresh(served, ".cdr")
    path.write_bytes(_zip({**served.members, "tensors.safetensors": save_tensors(tensors)}))
    model = Recommender.load(path, REGISTRY)
    with pytest.raises(BundleError, match="non-finite scores") as info:
        model.recommend_known(model.user_ids[:1], k=3)
    check_error(info.value, path)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("generator.dim", 9, "do not match the tensors"),
        ("generator.in_dim", 7, "do not match the tensors"),
        ("config", [1], "config: expected an object"),
        ("config", None, "config: expected an object"),
        ("target_item_ids", [], "target_item_ids: empty"),
        ("user_ids.0", 5, "user_ids[0]: expected a string id"),
    ],
)
def test_meta_fields_name_the_problem(
    served: Served, field: str, value: Any, expected: str
) -> None:
    meta = _meta(served.members)
    _set_path(meta, field, value, delete=False)
    members = {**served.members, "meta.json": json.dumps(meta).encode()}
    with pytest.raises(BundleError, match=re.escape(expected)):
        Recommender.from_members(members, REGISTRY, name="m.cdr")
    _record("bundle members", "error")


def test_strict_json_refuses_non_finite_scores() -> None:
    """The last guard: a non-finite score can never be printed as NaN / Infinity."""
    _record("output", "error")
    with pytest.raises(ValueError, match="Out of range float"):
        dumps([Recommendation("u", ("a",), (float("nan"),), cold_start=False)])
    with pytest.raises(ValueError, match="Out of range float"):
        dumps([Recommendation("u", ("a",), (float("-inf"),), cold_start=False)])


def test_unsupported_format_version(served: Served) -> None:
    meta = {**_meta(served.members), "format": "cdr-bundle/2"}
    members = {**served.members, "meta.json": json.dumps(meta).encode()}
    assert members_outcome(served, members, "bundle members") == "error"


# ---------------------------------------------------------------- exclude seen / k


def test_exclude_seen_large_k_is_strict_json(served: Served) -> None:
    model = served.model
    user = max(served.seen, key=lambda u: len(served.seen[u]))
    [rec] = model.recommend_known([user], k=BIG_K, exclude_seen=True)
    num_items = len(model.target_item_ids)
    assert len(rec.items) == num_items - len(served.seen[user])  # clamped, no -inf padding
    check_records([rec], BIG_K, served.seen)
    [everything] = model.recommend_known([user], k=BIG_K)
    assert len(everything.items) == num_items


@pytest.mark.parametrize("k", [0, -5, True, 2.5])
def test_k_must_be_a_positive_integer(served: Served, k: Any) -> None:
    model = served.model
    _record("k args", "error")
    with pytest.raises(InputError, match="k must be a positive integer"):
        model.recommend_known(model.user_ids[:1], k=k)
    with pytest.raises(InputError, match="k must be a positive integer"):
        model.recommend_cold("new", [(served.source_ids[0], 1.0)], k=k)


# ---------------------------------------------------------------- history files

RATINGS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10**30),
    st.sampled_from([1e308, -1, 0, -0.0, 1e-300, 5, MAX_RATING, MAX_RATING * 1.01, 3.5]),
    st.sampled_from([True, False, None, "3", [1], {"r": 1}]),
)


def _history_strategies(source_ids: tuple[str, ...]) -> st.SearchStrategy[Any]:
    ids = st.one_of(
        st.sampled_from(source_ids),
        st.sampled_from(source_ids[:3]),  # repeats
        st.text(max_size=4),
        st.integers(-3, 3),
        st.sampled_from([None, True, 1.5, float("nan"), [], {}]),
    )
    entries = st.one_of(
        st.sampled_from(source_ids),
        ids,
        st.tuples(ids, RATINGS).map(list),
        st.builds(lambda i, r: {"item": i, "rating": r}, ids, RATINGS),
        st.builds(lambda i: {"item": i}, ids),
        st.builds(lambda i, r: {"item": i, "score": r}, ids, RATINGS),
        st.builds(lambda r: {"rating": r}, RATINGS),
        st.lists(ids, max_size=3),  # pairs of the wrong length, nested lists
        st.lists(st.lists(ids, max_size=2), max_size=2),
    )
    valid_entries = st.one_of(
        st.sampled_from(source_ids),
        st.tuples(st.sampled_from(source_ids), st.floats(0.5, 5.0)).map(list),
        st.builds(
            lambda i, r: {"item": i, "rating": r}, st.sampled_from(source_ids), st.integers(1, 5)
        ),
    )
    return st.one_of(
        st.lists(entries, max_size=5),
        st.lists(valid_entries, min_size=1, max_size=5),  # mostly accepted: exercises results
        st.lists(valid_entries, min_size=1, max_size=2),
        st.dictionaries(
            st.one_of(st.sampled_from(source_ids), st.text(max_size=3)), RATINGS, max_size=4
        ),
        st.builds(lambda i, r: {"item": i, "rating": r}, ids, RATINGS),  # an unwrapped entry
        JSON_SCALARS,
    )


def _insane(value: Any) -> bool:
    """Whether a JSON document holds a value no accepted history can: a bool, null, a
    non-finite, zero, negative or over-MAX_RATING number, or a list nested three deep."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, float | int):
        return not math.isfinite(value) or not 0 < value <= MAX_RATING
    if isinstance(value, list):
        return any(
            _insane(v) or (isinstance(v, list) and any(isinstance(x, list) for x in v))
            for v in value
        )
    if isinstance(value, dict):
        return any(_insane(v) for v in value.values())
    return False


def history_outcome(served: Served, path: Path, k: int = 5) -> str:
    """Read the history at ``path`` and serve a cold user: "ok", or "error" naming the file."""
    try:
        history = read_history(path)
        rec = served.model.recommend_cold("newcomer", history, k=k)
        check_records([rec], k)
    except InputError as exc:
        check_error(exc, path)
        _record("history files", "error")
        return "error"
    _record("history files", "ok")
    return "ok"


@examples(HISTORY_EXAMPLES)
@given(data=st.data())
def test_json_histories(served: Served, data: st.DataObject) -> None:
    document = data.draw(_history_strategies(served.source_ids), label="history")
    path = _fresh(served, ".json")
    path.write_text(json.dumps(document))  # NaN / Infinity written as JSON's extensions
    outcome = history_outcome(served, path)
    if _insane(document):
        assert outcome == "error", document
    if isinstance(document, dict) and "item" in document:
        assert outcome == "error"  # an unwrapped entry is never read as {item id: rating}


CSV_RATINGS = [
    "",
    "3",
    "4.5",
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e308",
    "true",
    "null",
    "x",
    "1e-3",
]


@examples(HISTORY_EXAMPLES // 2)
@given(data=st.data())
def test_csv_histories(served: Served, data: st.DataObject) -> None:
    ids = st.one_of(st.sampled_from(served.source_ids), st.text(max_size=3))
    line = st.one_of(
        ids,
        st.tuples(ids, st.sampled_from(CSV_RATINGS)).map(",".join),
        st.tuples(ids, ids, ids).map(",".join),
        st.just(""),
    )
    lines = data.draw(st.lists(line, max_size=5), label="lines")
    path = _fresh(served, ".csv")
    path.write_text("\n".join(lines))
    outcome = history_outcome(served, path)
    bad = {"nan", "inf", "-inf", "-1", "0", "1e308", "true", "null", "x"}
    if any("," in ln and ln.rsplit(",", 1)[1].strip() in bad for ln in lines):
        assert outcome == "error", lines


@examples(HISTORY_EXAMPLES // 2)
@given(raw=st.binary(max_size=64), prefix=st.sampled_from([b"", b"\xff", b'["\x80"]', b"\xc3("]))
def test_history_bytes(served: Served, raw: bytes, prefix: bytes) -> None:
    path = _fresh(served, ".json")
    path.write_bytes(prefix + raw)
    outcome = history_outcome(served, path)
    if prefix:
        assert outcome == "error"  # not UTF-8


def _fixed_histories(source: str) -> list[tuple[str, Any, str]]:
    """(case id, file content: JSON value or raw bytes, expected message fragment)."""
    return [
        ("number", 5, "a history is"),
        ("null", None, "got null"),
        ("string", "B000001", "a history is"),
        ("unwrapped-entry", {"item": 5}, 'an object with an "item" key'),
        ("true-rating", [[source, True]], "boolean, not a number"),
        ("true-entry", [True], "boolean"),
        ("nan-rating", [[source, float("nan")]], "not a finite number"),
        ("inf-rating", [{"item": source, "rating": float("inf")}], "not a finite number"),
        ("huge-rating", {source: 1e308}, "outside (0, 1e+06]"),
        ("negative-rating", [[source, -1]], "outside (0, 1e+06]"),
        ("zero-rating", [[source, 0]], "outside (0, 1e+06]"),
        ("string-rating", [[source, "4"]], "rating must be a number"),
        ("null-rating", [{"item": source, "rating": None}], "rating must be a number"),
        ("nested-list", [[[source, 1], 2]], "a list is not an item id"),
        ("triple", [[source, 1, 2]], "got 3 element"),
        ("typo-key", [{"item": source, "score": 4}], "unknown key 'score'"),
        ("no-item-key", [{"rating": 4}], 'no "item" key'),
        ("duplicate", [source, [source, 2]], "repeats entry 1"),
        ("empty-list", [], "empty history"),
        ("empty-object", {}, "empty history"),
        ("unknown-item", [source, "nope"], "entry 2: unknown auxiliary item id 'nope'"),
        ("float-id", [1.5], "not an item id"),
        ("not-utf8", b'["\xff"]', "not UTF-8"),
        ("not-json", b"[1, 2", "not valid JSON"),
        ("duplicate-key", b'{"a": 1, "a": 2}', "appears more than once"),
        ("deep", b"[" * 100_000, "nested too deeply"),
    ]


def test_fixed_bad_histories(served: Served, tmp_path: Path) -> None:
    source = served.source_ids[1]
    for name, content, expected in _fixed_histories(source):
        path = tmp_path / f"{name}.json"
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        assert history_outcome(served, path) == "error", name
        with pytest.raises(InputError, match=re.escape(expected)):
            served.model.recommend_cold("u", read_history(path), k=3)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{id},nan", "line 2: rating nan is not a finite number"),
        ("{id},inf", "line 2: rating inf is not a finite number"),
        ("{id},-1", "line 2: rating -1 outside"),
        ("{id},0", "line 2: rating 0 outside"),
        ("{id},1e308", "line 2: rating 1e+308 outside"),
        ("{id},true", "line 2: rating 'true' is not a number"),
        ("{id},", "line 2: rating '' is not a number"),
        ("{id},1,2", "line 2: expected item[,rating], got 3 fields"),
        (",4", "line 2: item id must be a non-empty string"),
        ("{other}", "line 2: item {other!r} repeats line 1"),
    ],
)
def test_fixed_bad_csv_histories(served: Served, tmp_path: Path, line: str, expected: str) -> None:
    known, other = served.source_ids[2], served.source_ids[3]
    path = tmp_path / "h.csv"
    path.write_text(f"{other}\n{line.format(id=known, other=other)}\n")
    with pytest.raises(InputError, match=re.escape(expected.format(other=other))) as info:
        served.model.recommend_cold("u", read_history(path), k=3)
    check_error(info.value, path)
    _record("history files", "error")


def test_history_paths(served: Served, tmp_path: Path) -> None:
    for path, expected in [
        (tmp_path, "is a directory"),
        (tmp_path / "missing.json", "no such history file"),
    ]:
        _record("history files", "error")
        with pytest.raises(InputError, match=expected) as info:
            read_history(path)
        check_error(info.value, path)


def test_accepted_history_shapes_agree(served: Served, tmp_path: Path) -> None:
    """The four JSON shapes and CSV give the same recommendation for the same history."""
    a, b = served.source_ids[0], served.source_ids[5]
    shapes = {
        "pairs.json": json.dumps([[a, 2], [b, 4.0]]),
        "objects.json": json.dumps([{"item": a, "rating": 2}, {"item": b, "rating": 4}]),
        "mapping.json": json.dumps({a: 2, b: 4}),
        "scaled.json": json.dumps([[a, 0.5], [b, 1]]),  # only relative weights matter
        "lines.csv": f"{a},2\n\n{b},4\n",
    }
    model = served.model
    results = set()
    for name, text in shapes.items():
        _record("history files", "ok")
        (tmp_path / name).write_text(text)
        rec = model.recommend_cold("u", read_history(tmp_path / name), k=5, seed=3)
        check_records([rec], 5)
        results.add(rec.items)
    assert len(results) == 1
    plain = [model.recommend_cold("u", read_history(_write(tmp_path, "ids.json", [a, b])), k=5)]
    check_records(plain, 5)


def _write(folder: Path, name: str, value: Any) -> Path:
    (folder / name).write_text(json.dumps(value))
    return folder / name


# ---------------------------------------------------------------- the CLI


def _cli_error(args: list[str], expected: str) -> None:
    from cdr.cli.app import app

    _record("cli args", "error")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, (args, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error:"), result.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint:")), lines
    assert expected in lines[0], (expected, lines[0])
    assert result.stdout == ""


CLI_CASES = [
    ("k-negative", ["recommend", "{bundle}", "--user", "{user}", "--k", "-5"], "--k -5"),
    ("k-zero", ["recommend", "{bundle}", "--user", "{user}", "--k", "0"], "--k 0"),
    ("bundle-dir", ["recommend", "{tmp}", "--user", "{user}"], "is a directory"),
    ("bundle-missing", ["recommend", "{tmp}/no.cdr", "--user", "{user}"], "no such bundle"),
    (
        "bundle-meta-not-json",
        ["recommend", "{bad}", "--user", "{user}"],
        "meta.json: not valid JSON",
    ),
    ("unknown-user", ["recommend", "{bundle}", "--user", "zzz"], "unknown user id(s) 'zzz'"),
    ("history-number", ["recommend", "{bundle}", "-u", "n", "--history", "{h_number}"], "h_number"),
    ("history-null", ["recommend", "{bundle}", "-u", "n", "--history", "{h_null}"], "got null"),
    ("history-bytes", ["recommend", "{bundle}", "-u", "n", "--history", "{h_bytes}"], "not UTF-8"),
    ("history-dir", ["recommend", "{bundle}", "-u", "n", "--history", "{tmp}"], "is a directory"),
    ("history-nan", ["recommend", "{bundle}", "-u", "n", "--history", "{h_nan}"], "entry 1"),
    (
        "history-two-users",
        ["recommend", "{bundle}", "-u", "a", "-u", "b", "--history", "{h_nan}"],
        "exactly one --user",
    ),
    ("export-existing-dir", ["export", "{run}", "--out", "{tmp}"], "is a directory"),
    ("export-existing-file", ["export", "{run}", "--out", "{bundle}"], "already exists"),
    ("export-not-a-run", ["export", "{tmp}/nope", "--out", "{tmp}/x.cdr"], "no such run directory"),
]


@pytest.mark.parametrize(("case", "args", "expected"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_inputs_are_one_error_line(
    served: Served, tmp_path: Path, case: str, args: list[str], expected: str
) -> None:
    bad = tmp_path / "bad.cdr"
    bad.write_bytes(_zip({**served.members, "meta.json": b"{not json"}))
    files = {
        "h_number": b"5",
        "h_null": b"null",
        "h_bytes": b"\xff\xfe[]",
        "h_nan": f'[["{served.source_ids[0]}", NaN]]'.encode(),
    }
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_bytes(content)
    before = served.path.read_bytes()
    values = {
        "bundle": str(served.path),
        "user": next(iter(served.seen)),
        "tmp": str(tmp_path),
        "bad": str(bad),
        "run": str(served.run_dir),
        **{name: str(tmp_path / f"{name}.json") for name in files},
    }
    _cli_error([a.format(**values) for a in args], expected.format(**values))
    assert served.path.read_bytes() == before  # export never overwrote the bundle


def test_cli_exclude_seen_large_k_prints_strict_json(served: Served) -> None:
    from cdr.cli.app import app

    _record("cli args", "ok")
    user = next(iter(served.seen))
    args = ["recommend", str(served.path), "--user", user, "--k", str(BIG_K), "--exclude-seen"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout, parse_constant=_refuse)
    items = {entry["item"] for entry in record["items"]}
    assert items and not items & served.seen[user]
    assert len(items) == len(_meta(served.members)["target_item_ids"]) - len(served.seen[user])


def test_export_is_atomic_and_refuses_to_overwrite(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record("cli args", "error")
    out = tmp_path / "m.cdr"
    out.write_bytes(b"precious")
    with pytest.raises(BundleError, match="already exists") as info:
        export_bundle(served.run_dir, out, REGISTRY)
    assert info.value.hint and out.read_bytes() == b"precious"

    def fail(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    fresh = tmp_path / "fresh.cdr"
    with pytest.raises(BundleError, match="cannot write the bundle"):
        export_bundle(served.run_dir, fresh, REGISTRY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cdr"]  # no partial file left


def test_export_checks_the_artifacts(served: Served, tmp_path: Path) -> None:
    import shutil

    _record("bundle members", "error")
    run = tmp_path / "run"
    shutil.copytree(served.run_dir, run)
    tensors_path = run / "serving" / "tensors.safetensors"
    tensors = dict(load_tensors(tensors_path.read_bytes()))
    tensors["seen_item"] = tensors["seen_item"] + 10**6
    tensors_path.write_bytes(save_tensors(tensors))
    with pytest.raises(RunError, match="seen_item: index out of range") as info:
        export_bundle(run, tmp_path / "m.cdr", REGISTRY)
    check_error(info.value, run)
    tensors_path.write_bytes(b"junk")
    with pytest.raises(RunError, match="not a safetensors file"):
        export_bundle(run, tmp_path / "m.cdr", REGISTRY)
    assert not (tmp_path / "m.cdr").exists()
