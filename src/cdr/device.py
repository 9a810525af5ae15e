"""Resolve ``--device auto|cpu|cuda[:N]`` to a ``torch.device``; split CPU threads among
worker processes."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from cdr.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {name!r} is not a device (use auto, cpu or cuda)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' asked for but no CUDA device is visible", hint="use --device auto"
        )
    return device


def threads_per_worker(workers: int, env: Mapping[str, str] | None = None) -> int:
    """Torch threads for each of ``workers`` processes: the machine's cores, or
    ``OMP_NUM_THREADS`` where the user set it (two jobs side by side on a 2-core machine each
    ask for one), split among the workers."""
    limit = (os.environ if env is None else env).get("OMP_NUM_THREADS", "")
    total = int(limit) if limit.isdigit() and int(limit) > 0 else (os.cpu_count() or 1)
    return max(1, total // workers)
