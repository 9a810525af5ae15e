"""Run the cells of a study, each in its own run directory, resuming finished ones."""

from __future__ import annotations

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
    """
    report = reporter or null_reporter
    data = merge(default_data(), base or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[CellResult] = []
    report("study cells", advance=0, total=len(cells))
    for cell in cells:
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
        results.append(CellResult(cell, record))
        report("study cells")
    return results


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
