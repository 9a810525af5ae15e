"""Fair tuning before a reproduction: every method row of a paper's tables gets the same
Optuna budget on validation data, then its table cells run with the chosen settings.

For each distinct method configuration (table base + row overrides + the first column's
overrides + ``--set``), one study of ``trials`` trials over the paper's search space
(``configs/spaces/<paper>.toml``; a parameter whose ``when`` does not hold for the method is
not sampled) selects on the protocol's validation metric (``val_rmse`` for the cold-start
protocol, ``val_ndcg@k`` otherwise), on the first seed's split. Test metrics never take
part. The chosen settings are written to ``tuned.toml`` beside the tables, with each
study's best validation value and trial count, and reused for every seed and column of
that method (a method tuned at beta = 0.2 keeps its settings at 0.5 and 0.8, as a user
tunes once on one split). Studies are resumable (SQLite per method): a re-run after an
interruption finishes the missing trials only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from cdr.config.loading import apply_overrides, default_data, structure_experiment
from cdr.errors import ConfigError
from cdr.progress import Reporter
from cdr.registry import Registry
from cdr.runs import atomic_write_text
from cdr.studies.cells import seed_overrides
from cdr.studies.tables import TableSpec
from cdr.tuning.space import Space, check_space, literal, load_space, space_from_text


@attrs.frozen
class TunedMethod:
    """What a method's study chose: its overrides, the validation value and trial count."""

    label: str
    overrides: tuple[str, ...]
    metric: str
    value: float
    trials: int
    study: str


def packaged_space(paper: str) -> Space:
    """The paper's search space shipped in ``cdr/configs/spaces/<paper>.toml``."""
    path = resources.files("cdr") / "configs" / "spaces" / f"{paper}.toml"
    if not path.is_file():
        raise ConfigError(f"--tune-space: cdr ships no search space for {paper!r}; give one")
    return space_from_text(path.read_text())


def method_key(overrides: Sequence[str]) -> str:
    """A short stable name for a method configuration (its study directory)."""
    return hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:12]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "method"


def tune_methods(
    specs: Sequence[TableSpec],
    paper: str,
    *,
    trials: int,
    seed: int,
    registry: Registry,
    out_dir: Path,
    space_path: Path | None = None,
    overrides: Sequence[str] = (),
    reporter: Reporter | None = None,
) -> dict[tuple[str, str], TunedMethod]:
    """Tune every (table, row) of ``specs`` with ``trials`` trials each; identical method
    configurations share one study. Returns (table, row) -> what was chosen, and writes
    ``out_dir/tuned.toml``."""
    from cdr.tuning.study import (
        TuneSettings,
        default_direction,
        default_metric,
        default_storage,
        run_study,
    )

    if trials < 1:
        raise ConfigError(f"--tune-trials: {trials} must be at least 1")
    space = load_space(space_path) if space_path is not None else packaged_space(paper)
    chosen: dict[tuple[str, str], TunedMethod] = {}
    by_config: dict[str, TunedMethod] = {}
    for spec in specs:
        if spec.tuned_from:
            continue  # its rows take another method's settings (with_tuned)
        first_column = spec.columns[0][1] if spec.columns else ()
        for label, row in spec.rows:
            method = (*spec.base, *row, *first_column, *overrides)
            key = method_key(method)
            if key not in by_config:
                base = apply_overrides(default_data(), [*method, *seed_overrides(seed)])
                cfg = structure_experiment(base, registry)
                fixed = set_keys(method)
                free = tuple(p for p in space.params if p.key not in fixed)
                own = attrs.evolve(space, params=free)
                check_space(own, base, registry)
                metric = default_metric(cfg, registry)
                out = out_dir / "tuning" / f"{_slug(label)}-{key}"
                settings = TuneSettings(
                    out=out.resolve(),
                    base=base,
                    space=own,
                    trials=trials,
                    metric=metric,
                    direction=default_direction(metric),
                    storage=default_storage(out),
                    local_storage=True,
                    study_name=f"{paper}-{_slug(label)}",
                    seed=seed,
                )
                result = run_study(settings, 1, reporter)
                params = tuple(f"{k}={literal(v)}" for k, v in sorted(result.best_params.items()))
                complete = result.counts.get("complete", 0) + result.counts.get("pruned", 0)
                by_config[key] = TunedMethod(
                    label, params, metric, result.best_value, complete, str(out)
                )
            chosen[(spec.name, label)] = by_config[key]
    write_tuned(out_dir / "tuned.toml", chosen, paper, trials, seed)
    return chosen


def write_tuned(
    path: Path, chosen: dict[tuple[str, str], TunedMethod], paper: str, trials: int, seed: int
) -> None:
    """``tuned.toml``: per table and method, the chosen settings and their validation value."""
    data: dict[str, Any] = {
        "paper": paper,
        "trials_per_method": trials,
        "split_seed": seed,
        "selected_on": "validation (the protocol's validation users / edges); never test",
    }
    for (table, label), method in chosen.items():
        data.setdefault(table, {})[label] = {
            "overrides": list(method.overrides),
            "metric": method.metric,
            "value": method.value,
            "trials": method.trials,
            "study": method.study,
        }
    atomic_write_text(path, tomli_w.dumps(json.loads(json.dumps(data))))


def set_keys(overrides: Sequence[str]) -> set[str]:
    """The dotted keys a list of ``key=value`` overrides sets."""
    return {o.split("=", 1)[0].strip() for o in overrides}


def source_of(spec: TableSpec, label: str) -> tuple[str, str]:
    """Whose tuned settings row ``label`` of ``spec`` takes: its own, ``tuned_from``'s row,
    or (``tuned_from`` names a table only) that table's row of the same label."""
    if not spec.tuned_from:
        return spec.name, label
    table, named, row = spec.tuned_from.partition(":")
    return table, row if named else label


def with_tuned(spec: TableSpec, chosen: dict[tuple[str, str], TunedMethod]) -> TableSpec:
    """``spec`` whose rows carry their chosen settings after their own overrides; a key
    the row (or the table's base) sets itself keeps the row's value (the T of a T study)."""
    rows = []
    for label, row in spec.rows:
        source = source_of(spec, label)
        method = chosen.get(source)
        if method is None and chosen and spec.tuned_from:
            raise ConfigError(
                f"table {spec.name}: row {label!r} takes its settings from {source[0]}, "
                f"which has no tuned row {source[1]!r}"
            )
        if method is None:
            rows.append((label, row))
            continue
        fixed = set_keys((*spec.base, *row))
        tuned = tuple(o for o in method.overrides if o.split("=", 1)[0] not in fixed)
        rows.append((label, (*row, *tuned)))
    return attrs.evolve(spec, rows=tuple(rows))


def needed_specs(specs: Sequence[TableSpec], every: Sequence[TableSpec]) -> list[TableSpec]:
    """``specs`` plus the tables (from ``every``) whose methods they take settings from."""
    names = {s.name for s in specs}
    extra = []
    for spec in specs:
        table = spec.tuned_from.partition(":")[0]
        if table and table not in names:
            found = next((s for s in every if s.name == table), None)
            if found is None:
                raise ConfigError(f"table {spec.name}: tuned_from {spec.tuned_from!r} is no table")
            extra.append(found)
            names.add(table)
    return [*specs, *extra]


def render_tuned(chosen: dict[tuple[str, str], TunedMethod], trials: int, seed: int) -> str:
    """A Markdown section: what each method's study chose, on which validation value."""
    lines = [
        "### Tuned settings",
        "",
        f"Each method: {trials} Optuna trials on the validation data of seed {seed}'s split "
        "(never test), the same budget for every method; `tuned.toml` has them all.",
        "",
        "| table | method | validation | settings |",
        "|---|---|---|---|",
    ]
    for (table, label), method in chosen.items():
        settings = ", ".join(f"`{o}`" for o in method.overrides) or "(defaults)"
        lines.append(
            f"| {table} | {label} | {method.metric} {method.value:.4f} "
            f"({method.trials} trials) | {settings} |"
        )
    return "\n".join(lines) + "\n"
