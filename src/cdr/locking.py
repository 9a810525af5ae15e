"""Advisory file locks (``flock``) for processes that share a directory: tune workers asking
one study for trials, reproduce processes sharing a study's cells."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def flock(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[bool]:
    """Hold ``flock(mode)`` on ``path`` (created if missing); yields False instead when a
    non-blocking lock (``mode | LOCK_NB``) is held by another process. The lock goes with
    the process, so a killed holder never leaves it taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, mode)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
