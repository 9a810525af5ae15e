"""Run directories: where a run's config, metrics, per-user metrics and checkpoints live.

Every write is atomic (temp file in the same directory, then ``os.replace``), so an
interrupted run never leaves a half-written file; an existing run directory is never
overwritten.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cdr.errors import RunError

CONFIG = "config.toml"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def create_run_dir(output_dir: Path, name: str) -> Path:
    """A new directory ``output_dir/<name>-<YYYYmmdd-HHMMSS>[-n]``; never an existing one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = output_dir / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunError(f"{output_dir}: could not create a fresh run directory for {name!r}")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunError(f"{path}: missing (is this a finished run directory?)") from exc
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from exc
    return data


def write_table(path: Path, columns: Mapping[str, torch.Tensor | list[Any]]) -> None:
    """Write equal-length columns (1-D tensors or lists) as one Parquet file, atomically."""
    arrays = {
        name: pa.array(col.detach().cpu().numpy() if isinstance(col, torch.Tensor) else col)
        for name, col in columns.items()
    }
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """torch.save ``state`` atomically (a killed run keeps its previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RunError(f"{path}: no checkpoint")
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state
