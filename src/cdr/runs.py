"""Run directories: where a run's config, metrics, per-user metrics and checkpoints live.

Every write is atomic (temp file in the same directory, fsync, then ``os.replace``), so an
interrupted run never leaves a half-written file; an existing run directory is never
overwritten. Run names are confined to their output directory (no ``/``, no ``..``).
Checkpoints live in ``cdr.training.checkpoint`` (safetensors + JSON, never pickle).
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
from cdr.paths import safe_name

CONFIG = "config.toml"
METRICS = "metrics.json"
CHECKPOINTS = "checkpoints"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.

    The data is fsynced before the rename; the file gets the mode a plain ``open`` would
    (0666 less the umask), not the 0600 of the temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def create_run_dir(output_dir: Path, name: str) -> Path:
    """A new directory ``output_dir/<name>-<YYYYmmdd-HHMMSS>[-n]``; never an existing one.

    ``name`` must be one plain path component (UnsafePathError otherwise)."""
    safe_name(name, "name")
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
