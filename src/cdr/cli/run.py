"""``cdr run`` and ``cdr sweep``: experiments from config files, written to run directories.

``cdr run --nproc N`` starts the same command again under torchrun
(``python -m torch.distributed.run --standalone --nproc-per-node N -m cdr run ...``), N
data-parallel processes on this machine (``cdr.training.distributed``); each started process
sees torchrun's environment, and ranks other than 0 run quietly (no progress, no table, no
tracking: rank 0 reports and writes the run directory).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdr.cli import common
from cdr.cli.common import SetOpt, console, reporter, user_errors
from cdr.config import load_experiment
from cdr.config.loading import apply_overrides, read_toml
from cdr.errors import ConfigError
from cdr.experiment import RunRecord
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.studies.cells import run_cells
from cdr.studies.sweep import grid_cells, parse_grid, plot_sweep, sweep_table, write_csv
from cdr.tracking import TRACKERS, resume_tracked, run_tracked
from cdr.training.distributed import World

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
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Data-parallel processes on this machine (starts the run under torchrun).",
        ),
    ] = 1,
) -> None:
    """Train and evaluate the experiment in CONFIG, writing a new run directory."""
    world = World.from_env()
    if nproc > 1:
        if world.distributed:
            raise ConfigError(
                f"--nproc {nproc}: this process is already rank {world.rank} of a "
                f"{world.size}-process torchrun job",
                hint="drop --nproc when starting cdr under torchrun yourself",
            )
        args = _relaunch_args(config, set_, out, resume, tracking, tracking_uri)
        raise typer.Exit(_torchrun(nproc, args))
    if not world.is_main:
        tracking, tracking_uri = "none", None  # rank 0 tracks the run
    registry = Registry()
    with _progress(world) as progress:
        if resume is not None:
            record = resume_tracked(
                resume, registry, tracking=tracking, tracking_uri=tracking_uri, reporter=progress
            )
        else:
            if config is None:
                raise ConfigError("cdr run: give a CONFIG file or --resume RUN_DIR")
            cfg = load_experiment(config, registry, set_ or [])
            record = run_tracked(
                cfg,
                registry,
                tracking=tracking,
                tracking_uri=tracking_uri,
                reporter=progress,
                run_dir=out,
            )
    if world.is_main:
        console.print(metrics_table(record))


@contextlib.contextmanager
def _progress(world: World) -> Iterator[Reporter]:
    """Progress bars on rank 0; the other ranks of a torchrun job report nothing."""
    if not world.is_main:
        yield null_reporter
        return
    with reporter() as progress:
        yield progress


def _relaunch_args(
    config: Path | None,
    set_: list[str] | None,
    out: Path | None,
    resume: Path | None,
    tracking: str,
    tracking_uri: str | None,
) -> list[str]:
    """The ``cdr run`` arguments of this call, less ``--nproc``."""
    args = ["--debug"] if common.state.debug else []
    args.append("run")
    if config is not None:
        args.append(str(config))
    for item in set_ or []:
        args += ["--set", item]
    if out is not None:
        args += ["--out", str(out)]
    if resume is not None:
        args += ["--resume", str(resume)]
    args += ["--tracking", tracking]
    if tracking_uri is not None:
        args += ["--tracking-uri", tracking_uri]
    return args


def _torchrun(nproc: int, args: list[str]) -> int:
    """Run ``python -m cdr ARGS`` as ``nproc`` torchrun processes on this machine; their exit
    status. Each gets an equal share of the CPU threads unless OMP_NUM_THREADS is set."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "cdr", *args,
    ]  # fmt: skip
    return subprocess.run(command, env=env, check=False).returncode


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
