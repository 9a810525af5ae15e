"""Checkpoints: safetensors + JSON round trips, and files that are not ours never run code."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from cdr.errors import RunError
from cdr.training import checkpoint
from cdr.training.checkpoint import load_checkpoint, save_checkpoint


def test_nested_state_round_trips_with_key_types_tuples_and_infinities(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "module": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "best": math.inf,
        "nothing": None,
        "betas": (0.9, 0.999),
        "epoch": 7,
    }
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert back["best"] == math.inf and back["epoch"] == 7 and back["nothing"] is None
    assert back["betas"] == (0.9, 0.999)
    assert torch.equal(back["rng"], state["rng"])
    # optimizer state keeps its int keys, so Adam accepts it as is
    assert set(back["optimizer"]["state"]) == {0, 1}
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(back["optimizer"])
    for key, value in model.state_dict().items():
        assert torch.equal(back["module"][key], value)


def test_checkpoint_files_get_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.safetensors", {"x": torch.zeros(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.safetensors").stat().st_mode) == 0o644


class _Exploit:
    """Unpickling this calls ``Path.touch(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path(self.marker).touch, ())  # type: ignore[return-value]


def test_malicious_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Exploit(marker)})
    # sanity: this payload does run code when unpickled
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    # whatever the file is called (torch picks a loader by suffix; we must not)
    for name in ("last.safetensors", "last.pt", "checkpoint"):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(RunError, match="not a cdr checkpoint"):
            load_checkpoint(path)
        assert not marker.exists(), name
        # a torch.save zip file carrying the same object: refused, nothing runs
        with path.open("wb") as fh:
            torch.save({"model": _Exploit(marker)}, fh)
        with pytest.raises(RunError):
            load_checkpoint(path)
        assert not marker.exists(), name


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "directory", "foreign"])
def test_damaged_checkpoints_are_one_line_run_errors(tmp_path: Path, damage: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"module": {"w": torch.arange(100.0)}, "epoch": 3})
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:9] + bytes([data[9] ^ 0xFF]) + data[10:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    else:  # a valid safetensors file that is not a cdr checkpoint
        save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(RunError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _with_header(path: Path, metadata: dict[str, str], tensors: dict | None = None) -> Path:
    """A safetensors file carrying ``metadata`` as its header (and ``tensors``)."""
    from safetensors.torch import save_file

    save_file(tensors or {}, str(path), metadata=metadata)
    return path


def test_a_missing_nested_tensor_names_the_file(tmp_path: Path) -> None:
    """The tensor sits in a list in a dict in a tuple in the top-level dict: the message
    names the file from every depth."""
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": ({"y": [torch.ones(2)]},), "z": torch.zeros(1)})
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
    kept = {k: v for k, v in load_file(str(path)).items() if v.numel() == 1}  # drop ones(2)
    _with_header(path, metadata, kept)
    with pytest.raises(RunError, match=rf"^{re.escape(str(path))}: tensor '\S+' is missing"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "skeleton",
    [
        {"$d": [["a", {"$x": 1}]]},  # an unknown marker
        {"$d": [["a", 1, 2]]},  # a pair of three
        {"$d": [["a"]]},  # a pair of one
        {"$d": [[[1], 2]]},  # an unhashable key
        {"$d": [[1.5, 2]]},  # a float key
        {"$d": "ab"},  # pairs that are not a list
        {"$d": [["a", 1]], "$t": "k"},  # two markers
        {"$f": "1.5"},  # not a special float
        [1, 2],  # not a dict at the top
    ],
)
def test_malformed_headers_are_named_one_line_errors(tmp_path: Path, skeleton: object) -> None:
    path = _with_header(
        tmp_path / "c.safetensors", {"format": "cdr-checkpoint/1", "cdr": json.dumps(skeleton)}
    )
    with pytest.raises(RunError, match=rf"^{re.escape(str(path))}: malformed checkpoint header$"):
        load_checkpoint(path)


def test_the_format_and_the_skeleton_are_both_required(tmp_path: Path) -> None:
    good = json.dumps({"$d": [["epoch", 3]]})
    other = _with_header(tmp_path / "a", {"format": "cdr-checkpoint/0", "cdr": good})
    with pytest.raises(RunError, match=r"not a cdr checkpoint \(format 'cdr-checkpoint/0'\)"):
        load_checkpoint(other)
    bare = _with_header(tmp_path / "b", {"format": "cdr-checkpoint/1"})
    with pytest.raises(RunError, match=r"not a cdr checkpoint \(format 'cdr-checkpoint/1'\)"):
        load_checkpoint(bare)
    ok = _with_header(tmp_path / "c", {"format": "cdr-checkpoint/1", "cdr": good})
    assert load_checkpoint(ok) == {"epoch": 3}


def test_an_unreadable_file_is_refused_with_the_parsers_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # the parser's own words, first line
        first = str(exc).splitlines()[0]
    assert first
    with pytest.raises(RunError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: not a cdr checkpoint ({first})"

    def silent(*args: object, **kwargs: object) -> None:
        raise OSError  # an error without a message is named by its type

    monkeypatch.setattr(checkpoint, "safe_open", silent)
    with pytest.raises(RunError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: not a cdr checkpoint (OSError)"


def test_a_bad_key_is_located_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"checkpoint \S*outer/inner: key True is not a str"):
        save_checkpoint(tmp_path / "c.safetensors", {"outer": {"inner": {True: 1}}})
    with pytest.raises(TypeError, match=r"checkpoint \S*outer: key \(1, 2\) is not a str"):
        save_checkpoint(tmp_path / "c.safetensors", {"outer": {(1, 2): 1}})


def test_a_header_that_is_not_json_is_malformed(tmp_path: Path) -> None:
    path = _with_header(tmp_path / "c", {"format": "cdr-checkpoint/1", "cdr": "{not json"})
    with pytest.raises(RunError, match=rf"^{re.escape(str(path))}: malformed checkpoint header$"):
        load_checkpoint(path)


def test_what_cannot_be_stored_is_named_with_its_place(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"^checkpoint \S*outer/x: cannot store a object$"):
        save_checkpoint(tmp_path / "c", {"outer": {"x": object()}})
    # the int key 1 and the str key "1" flatten to the same tensor key
    with pytest.raises(TypeError, match=r"^checkpoint \S*d/1: two tensors under one key$"):
        save_checkpoint(tmp_path / "c", {"d": {1: torch.zeros(1), "1": torch.ones(1)}})
