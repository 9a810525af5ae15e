"""Progress reporting without printing: library code calls a ``Reporter``; the CLI renders it.

A reporter is any callable ``reporter(task, advance=1, total=None, **info)``. ``task`` names
a unit of long work ("encode items", "stage 2 epoch"); ``total`` is given on the first call
of a task (or when it changes); ``info`` carries numbers worth showing (loss, items/s).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None: ...


def null_reporter(task: str, advance: int = 1, total: int | None = None, **info: float) -> None:
    """A reporter that ignores everything (the default in library calls)."""
