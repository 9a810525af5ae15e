"""Paths built from user input stay inside their parent directory.

A run name, an image file named in a data file, a study cell: each becomes a path under a
directory the user chose. ``safe_name`` admits one plain path component; ``confined``
resolves a relative path and refuses one that leaves its root (``..``, absolute paths,
symlinks pointing out).
"""

from __future__ import annotations

import re
from pathlib import Path

from cdr.errors import UnsafePathError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}")


def is_safe_name(name: str) -> bool:
    """One path component of letters, digits and ``._+=-``; not starting with a dot."""
    return bool(_NAME.fullmatch(name)) and ".." not in name


def safe_name(name: str, what: str = "name") -> str:
    if not is_safe_name(name):
        raise UnsafePathError(
            f"{what}: {name!r} is not a plain file name (letters, digits and ._+=- only, "
            "no '/' or '..', at most 128 characters)"
        )
    return name


def confined(root: Path, relative: str | Path, what: str = "path") -> Path:
    """``root / relative``, refused when it resolves outside ``root``."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise UnsafePathError(f"{what}: {str(relative)!r} leaves {root}")
    return path
