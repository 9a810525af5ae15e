"""Shared CLI plumbing: consoles, the user-error boundary, a rich progress reporter."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cdr.errors import CdrError

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Experiment config (TOML).", dir_okay=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: dotted.key=value (repeatable)."),
]


class _State:
    debug = False


state = _State()


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a CdrError (or an OSError: a path the file system refused) as one red line
    (+ hint) on stderr and exit 1; other exceptions are bugs and keep their tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CdrError as exc:
            if state.debug:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            if exc.hint:
                err_console.print(f"[dim]hint: {exc.hint}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            # the file system said no (a path that is a file, permissions, a full disk):
            # the user can act on it from one line naming the path
            if state.debug:
                raise
            where = exc.filename if exc.filename is not None else "I/O"
            reason = exc.strerror or str(exc)
            err_console.print(f"[bold red]error:[/] {where}: {reason}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]; completed work is kept on disk")
            raise typer.Exit(130) from None

    return wrapper


class RichReporter:
    """Renders ``cdr.progress.Reporter`` calls as rich progress bars (one per task name)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in info.items())
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total, info=shown)
            if advance:
                self.progress.advance(self.tasks[task], advance)
            return
        task_id = self.tasks[task]
        if total is not None and self.progress.tasks[task_id].finished:
            # the same kind of work again (e.g. the other domain's features): start afresh
            self.progress.reset(task_id, total=total, completed=0)
        kwargs: dict[str, Any] = (
            {"advance": advance, "info": shown} if shown else {"advance": advance}
        )
        if total is not None:
            kwargs["total"] = total
        self.progress.update(task_id, **kwargs)


@contextmanager
def reporter() -> Iterator[RichReporter]:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        yield RichReporter(progress)
