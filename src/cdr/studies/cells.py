"""Run the cells of a study, each in its own run directory, resuming finished ones."""

from __future__ import annotations

import fcntl
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cdr.config.loading import (
    apply_overrides,
    config_to_toml,
    default_data,
    merge,
    structure_experiment,
)
from cdr.errors import ConfigError
from cdr.experiment import RunRecord, resume_experiment, run_experiment, run_status
from cdr.locking import flock
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CONFIG


@attrs.frozen
class Cell:
    """One run of a study: a label (unique within the study), overrides, a seed."""

    label: str
    overrides: tuple[str, ...]
    seed: int

    @property
    def dirname(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label)
        return f"{safe}-seed{self.seed}"


def seed_overrides(seed: int) -> tuple[str, ...]:
    """What a study's seed sets: the model seed and the split seed (each seed re-draws the
    split, so the spread over seeds includes the split's)."""
    return (f"seed={seed}", f"split.seed={seed}")


@attrs.frozen
class CellResult:
    cell: Cell
    record: RunRecord


def run_cells(
    base: Mapping[str, Any] | None,
    cells: Sequence[Cell],
    registry: Registry,
    out_dir: Path,
    *,
    reporter: Reporter | None = None,
) -> list[CellResult]:
    """Run every cell of a study under ``out_dir``; finished cells are read back, not rerun.

    ``base``: plain config data merged over the packaged default (None = the default).
    Several processes may run the same study side by side (the same command in two
    terminals): each cell is run under a lock (``out_dir/.<cell>.lock``); a process skips a
    cell another one holds, and comes back to it at the end, when that one has finished it
    (or died: the lock goes with its process, and the cell resumes from its checkpoints).
    """
    report = reporter or null_reporter
    data = merge(default_data(), base or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, CellResult] = {}
    report("study cells", advance=0, total=len(cells))
    busy: list[int] = []
    for index, cell in enumerate(cells):
        with flock(_lock(out_dir, cell), fcntl.LOCK_EX | fcntl.LOCK_NB) as mine:
            if mine:
                results[index] = _run_cell(data, cell, registry, out_dir, reporter)
                report("study cells")
            else:
                busy.append(index)
    for index in busy:  # another process holds them: wait for it, then read back
        with flock(_lock(out_dir, cells[index])):
            results[index] = _run_cell(data, cells[index], registry, out_dir, reporter)
        report("study cells")
    return [results[i] for i in range(len(cells))]


def _lock(out_dir: Path, cell: Cell) -> Path:
    return out_dir / f".{cell.dirname}.lock"


def _run_cell(
    data: dict[str, Any],
    cell: Cell,
    registry: Registry,
    out_dir: Path,
    reporter: Reporter | None,
) -> CellResult:
    """One cell, its lock held: read back if finished (or finished under another table's
    label), resumed if interrupted, else run."""
    cfg = structure_experiment(
        apply_overrides(data, [*cell.overrides, *seed_overrides(cell.seed)]), registry
    )
    run_dir = out_dir / cell.dirname
    wanted = tomllib.loads(config_to_toml(cfg, registry))  # as a run's config.toml reads
    twin = None if run_dir.exists() else finished_twin(out_dir, wanted)
    if twin is not None:  # the same run under another table's label: read it back
        record = resume_experiment(twin, registry, reporter=reporter)
    elif run_dir.exists() and run_status(run_dir):
        check_same_config(run_dir, wanted)
        record = resume_experiment(run_dir, registry, reporter=reporter)
    else:
        if run_dir.exists():  # created but never started: nothing to keep
            for child in run_dir.iterdir():
                child.unlink()
            run_dir.rmdir()
        record = run_experiment(cfg, registry, reporter=reporter, run_dir=run_dir)
    return CellResult(cell, record)


def stored_config(run_dir: Path) -> dict[str, Any] | None:
    """A run directory's config as data; None when it has none or it cannot be read
    (``resume_experiment`` then says what is wrong with the directory)."""
    try:
        return tomllib.loads((run_dir / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None


def finished_twin(out_dir: Path, wanted: dict[str, Any]) -> Path | None:
    """A finished run directory under ``out_dir`` whose config is ``wanted`` (a method that
    appears in several tables, e.g. MICRec in Tables 2, 3 and 4, runs once per seed)."""
    for path in sorted(out_dir.glob(f"*/{CONFIG}")):
        if stored_config(path.parent) == wanted and run_status(path.parent).get("state") == "done":
            return path.parent
    return None


def check_same_config(run_dir: Path, wanted: dict[str, Any]) -> None:
    """A cell's run directory is resumed only if it was run with the cell's config: a
    study re-run with other overrides (a tuned setting, a ``--set``) must not read back a
    stale result under the same label."""
    stored = stored_config(run_dir)
    if stored is not None and stored != wanted:
        raise ConfigError(
            f"{run_dir}: was run with another config than this study's cell "
            f"{run_dir.name!r}; remove it or use another --out"
        )
