"""``cdr reproduce music|micrec|compose``: the papers' tables on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdr.cli.common import SetOpt, console, reporter, user_errors
from cdr.errors import ConfigError
from cdr.registry import Registry
from cdr.studies.reproduce import reproduce as run_reproduce


@user_errors
def reproduce(
    paper: Annotated[str, typer.Argument(help="music, micrec or compose.")],
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    out: Annotated[Path | None, typer.Option(help="Study directory (resumable).")] = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", "-t", help="Only these tables (repeatable).")
    ] = None,
    set_: SetOpt = None,
    tune_trials: Annotated[
        int,
        typer.Option(
            help="Tune every method first: this many Optuna trials each on validation data "
            "(0: the tables' settings as they are)."
        ),
    ] = 0,
    dataset: Annotated[
        str | None,
        typer.Option(help="ml-100k-genres (default) or synthetic (see docs/results.md)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            "-x",
            help="Leave this method row out of every table (repeatable; e.g. a model too "
            "slow to tune on this machine).",
        ),
    ] = None,
    tune_space: Annotated[
        Path | None,
        typer.Option(help="Search space TOML (default: the one cdr ships for the paper)."),
    ] = None,
) -> None:
    """Run a paper's tables (3 seeds, mean +- std) and write Markdown + CSV + PNG.

    Interrupted studies resume: finished cells are read back, not rerun. The same command
    started in a second terminal shares the work (tuning trials and table cells, each under
    a lock).
    """
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError(f"--seeds {seeds!r}: expected comma-separated integers") from exc
    if tune_trials < 0:
        raise ConfigError(f"--tune-trials: {tune_trials} must be 0 or more")
    out_dir = out or Path("results") / paper / (dataset or "")
    with reporter() as progress:
        markdown = run_reproduce(
            paper,
            seed_list,
            Registry(),
            out_dir,
            overrides=set_ or [],
            only=table or [],
            reporter=progress,
            tune_trials=tune_trials,
            tune_space=tune_space,
            dataset=dataset,
            exclude=exclude or [],
        )
    console.print(markdown.read_text())
    console.print(f"wrote {markdown}, {markdown.with_suffix('.csv')}")
