"""What a reproduction cost: the run time its table cells and tuning trials recorded.

A reproduction can take CPU hours, run in several processes and resume across machines,
so its wall-clock time is not one stopwatch reading. Each run records its own: a cell's
``status.json`` has ``seconds`` (the run's last execution: a run resumed after an
interruption counts from its resumption, so the sums are lower bounds), a study's
``trials.csv`` has each trial's ``seconds``. The sums say how much single-process run time
the tables took; processes running side by side overlap in wall time.
"""

from __future__ import annotations

import csv
import os
import platform
from collections.abc import Iterable
from pathlib import Path

import attrs

from cdr.errors import RunError
from cdr.experiment import run_status


@attrs.frozen
class RunTime:
    """Summed run time: ``runs`` finished runs took ``seconds``; ``unknown`` recorded none."""

    runs: int
    seconds: float
    unknown: int = 0

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


def cell_time(run_dirs: Iterable[str | Path]) -> RunTime:
    """The run time recorded by each distinct run directory (a run shared by two tables
    counts once)."""
    runs, seconds, unknown = 0, 0.0, 0
    for run_dir in sorted({Path(d).resolve() for d in run_dirs}):
        try:
            value = run_status(run_dir).get("seconds")
        except RunError:  # a status.json that is not JSON
            value = None
        if isinstance(value, int | float):
            runs, seconds = runs + 1, seconds + float(value)
        else:
            unknown += 1
    return RunTime(runs, seconds, unknown)


def trial_time(studies: Iterable[str | Path]) -> RunTime:
    """The run time of every trial run in each distinct study's ``trials.csv`` (rows of
    repeated draws, which ran nothing, left out)."""
    runs, seconds, unknown = 0, 0.0, 0
    for study in sorted({Path(s).resolve() for s in studies}):
        try:
            with (study / "trials.csv").open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            continue
        for row in rows:
            if row.get("state") == "repeat":  # a repeated draw, told failed, never run
                continue
            try:
                seconds += float(row.get("seconds") or "")
                runs += 1
            except ValueError:
                unknown += 1
    return RunTime(runs, seconds, unknown)


def machine() -> str:
    """This machine in a few words (CPU architecture and core count)."""
    return f"{platform.machine() or 'unknown'} CPU, {os.cpu_count() or '?'} cores"


def render_run_time(cells: RunTime, trials: RunTime | None) -> str:
    """A Markdown section: the cells' and tuning trials' summed run time."""
    parts = [f"{cells.runs} cell runs {cells.hours:.2f} h"]
    if trials is not None:
        parts.append(f"{trials.runs} tuning trials {trials.hours:.2f} h")
    total = cells.seconds + (trials.seconds if trials is not None else 0.0)
    missing = cells.unknown + (trials.unknown if trials is not None else 0)
    lines = [
        "### Run time",
        "",
        f"Recorded by the runs ({machine()}): "
        + ", ".join(parts)
        + f"; {total / 3600.0:.2f} h in all, summed over runs (processes side by side "
        "overlap in wall time; a run resumed after an interruption counts from its "
        "resumption)."
        + (f" {missing} runs recorded no time." if missing else ""),
    ]
    return "\n".join(lines) + "\n"
