"""``cdr run`` and ``cdr sweep``: experiments from config files, written to run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdr.cli.common import SetOpt, console, reporter, user_errors
from cdr.config import load_experiment
from cdr.config.loading import apply_overrides, read_toml
from cdr.errors import ConfigError
from cdr.experiment import RunRecord
from cdr.registry import Registry
from cdr.studies.cells import run_cells
from cdr.studies.sweep import grid_cells, parse_grid, plot_sweep, sweep_table, write_csv
from cdr.tracking import TRACKERS, resume_tracked, run_tracked

TrackingOpt = Annotated[
    str,
    typer.Option(
        "--tracking",
        help=f"Log params, per-epoch losses / validation and final metrics: {'|'.join(TRACKERS)}.",
    ),
]
TrackingUriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="TensorBoard log root (default: the run directory's tensorboard/).",
    ),
]


def metrics_table(record: RunRecord, title: str | None = None) -> Table:
    table = Table(title=title or f"{record.pipeline} run: {record.run_dir}")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for name, value in sorted(record.metrics.items()):
        table.add_row(name, f"{value:.4f}")
    return table


@user_errors
def run(
    config: Annotated[
        Path | None, typer.Argument(help="Experiment config (TOML); omit with --resume.")
    ] = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory to create (must not exist).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the interrupted run in this directory.")
    ] = None,
    tracking: TrackingOpt = "none",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Train and evaluate the experiment in CONFIG, writing a new run directory."""
    registry = Registry()
    with reporter() as progress:
        if resume is not None:
            record = resume_tracked(
                resume, registry, tracking=tracking, tracking_uri=tracking_uri, reporter=progress
            )
        else:
            if config is None:
                raise ConfigError("cdr run: give a CONFIG file or --resume RUN_DIR")
            cfg = load_experiment(config, registry, set_ or [])
            record = run_tracked(
                cfg, registry, tracking=tracking, tracking_uri=tracking_uri,
                reporter=progress, run_dir=out,
            )
    console.print(metrics_table(record))


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else f"{value}"


@user_errors
def sweep(
    config: Annotated[Path | None, typer.Argument(help="Base experiment config (TOML).")] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", help="Axis: dotted.key=v1,v2,... (repeatable)."),
    ] = None,
    set_: SetOpt = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    out: Annotated[Path, typer.Option(help="Study directory (resumable).")] = Path("runs/sweep"),
    metric: Annotated[str, typer.Option(help="Metric to plot.")] = "ndcg@20",
) -> None:
    """Run a grid of experiments (e.g. --grid generator.steps=2,5,10,20,50) with a plot."""
    registry = Registry()
    base = read_toml(config) if config is not None else {}
    base = apply_overrides(base, set_ or [])
    axes = parse_grid(grid or [])
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers") from exc
    cells = grid_cells(grid or [], seed_list)
    with reporter() as progress:
        results = run_cells(base, cells, registry, out, reporter=progress)
    rows = sweep_table(results)
    write_csv(out / "sweep.csv", rows)
    table = Table(title=f"sweep {out}")
    columns = [key for key, _ in axes] + ["seed", metric]
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    console.print(table)
    if axes:
        plot_sweep(out / "sweep.png", rows, axes[0][0], metric)
        console.print(f"wrote {out / 'sweep.csv'} and {out / 'sweep.png'}")
