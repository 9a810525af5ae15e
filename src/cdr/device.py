"""Resolve ``--device auto|cpu|cuda[:N]`` to a ``torch.device``."""

from __future__ import annotations

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
