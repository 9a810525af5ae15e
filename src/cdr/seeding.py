"""Deterministic seeding: every random draw in cdr goes through a seeded generator."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def derive_seed(seed: int, *labels: str | int) -> int:
    """A stable child seed for a named sub-task (same inputs -> same seed on any machine)."""
    import hashlib

    text = ":".join(str(part) for part in (seed, *labels))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % 2**63
