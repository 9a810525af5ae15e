"""``cdr tune``: an Optuna study over a search space, each trial an ordinary run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdr.cli.common import SetOpt, console, reporter, user_errors
from cdr.cli.run import TrackingOpt, TrackingUriOpt
from cdr.config.loading import (
    apply_overrides,
    default_data,
    merge,
    read_toml,
    structure_experiment,
)
from cdr.errors import ConfigError
from cdr.registry import Registry
from cdr.tracking import check_tracking


@user_errors
def tune(
    config: Annotated[
        Path | None, typer.Argument(help="Base experiment config (TOML); omitted: the default.")
    ] = None,
    space: Annotated[
        Path, typer.Option("--space", help="Search space (TOML; see docs/tuning.md).")
    ] = ...,  # type: ignore[assignment]
    trials: Annotated[int, typer.Option(help="Trials the study should have finished.")] = 20,
    jobs: Annotated[int, typer.Option(help="Parallel worker processes on this machine.")] = 1,
    storage: Annotated[
        str | None, typer.Option(help="Optuna RDB URL (default: sqlite in OUT/study.db).")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="Validation metric to optimise (default: val_rmse for MuSiC's "
                     "cold-start protocol, else val_ndcg@k)."),
    ] = None,
    direction: Annotated[
        str | None, typer.Option(help="max or min (default: min for MAE/RMSE, else max).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Study directory (resumable).")] = Path("runs/tune"),
    set_: SetOpt = None,
    study_name: Annotated[str, typer.Option(help="Study name in the storage.")] = "cdr-tune",
    pruner: Annotated[str, typer.Option(help="median or none.")] = "median",
    prune_warmup: Annotated[
        int, typer.Option(help="Epochs of a stage before a trial may be pruned.")
    ] = 2,
    tracking: TrackingOpt = "none",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Tune CONFIG over --space with Optuna (TPE or grid, median pruning, SQLite storage).

    Example: cdr tune --space space.toml --trials 30 --jobs 2 --set dataset.size=small
    """
    from cdr.tuning.space import check_space, load_space
    from cdr.tuning.study import (
        PRUNERS,
        TuneSettings,
        check_metric,
        default_direction,
        default_metric,
        default_storage,
        run_study,
    )

    registry = Registry()
    check_tracking(tracking)
    if trials < 1 or jobs < 1:
        raise ConfigError("--trials and --jobs must be at least 1")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner: {pruner!r} is not one of {', '.join(PRUNERS)}")
    if direction not in (None, "max", "min"):
        raise ConfigError(f"--direction: {direction!r} is not max or min")
    base = merge(default_data(), read_toml(config) if config is not None else {})
    base = apply_overrides(base, set_ or [])
    cfg = structure_experiment(base, registry)
    search = load_space(space)
    check_space(search, base, registry)
    name = check_metric(metric or default_metric(cfg, registry))
    goal = {"max": "maximize", "min": "minimize", None: default_direction(name)}[direction]
    settings = TuneSettings(
        out=out.resolve(),
        base=base,
        space=search,
        trials=trials,
        metric=name,
        direction=goal,
        storage=storage or default_storage(out),
        local_storage=storage is None,
        study_name=study_name,
        pruner=pruner,
        warmup=prune_warmup,
        tracking=tracking,
        tracking_uri=tracking_uri,
        seed=cfg.seed,
    )
    with reporter() as progress:
        result = run_study(settings, jobs, progress)
    table = Table(title=f"study {study_name} ({result.out}): {name}, {goal}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_row("trials", ", ".join(f"{n} {s}" for s, n in sorted(result.counts.items())))
    table.add_row(f"best {name} (trial {result.best_number})", f"{result.best_value:.4f}")
    for key, value in sorted(result.best_params.items()):
        table.add_row(f"  {key}", f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_section()
    for key, value in sorted(result.test_metrics.items()):
        if not key.startswith("ref/") and not key.endswith("_epochs"):
            table.add_row(f"test {key}", f"{value:.4f}")
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
    console.print("wrote " + ", ".join(str(p) for p in result.files))
