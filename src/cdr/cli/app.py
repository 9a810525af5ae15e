"""The ``cdr`` application: registers the command modules on one typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from cdr import __version__
from cdr.cli import common
from cdr.cli.components import components
from cdr.cli.compose import compose
from cdr.cli.config import config_app
from cdr.cli.datasets import datasets_app
from cdr.cli.encode import encode
from cdr.cli.report import compare, report
from cdr.cli.reproduce import reproduce
from cdr.cli.run import run, sweep
from cdr.cli.serve import export, recommend
from cdr.cli.server import serve
from cdr.cli.tune import tune

app = typer.Typer(
    name="cdr",
    help="Compose, train, evaluate and serve cross-domain recommenders for cold-start users.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        common.console.print(f"cdr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of user errors.")] = False,
) -> None:
    common.state.debug = debug


app.command()(compose)
app.command()(components)
app.command()(run)
app.command()(sweep)
app.command()(tune)
app.command()(export)
app.command()(recommend)
app.command()(serve)
app.command()(report)
app.command()(compare)
app.command()(encode)
app.command()(reproduce)
app.add_typer(config_app, name="config")
app.add_typer(datasets_app, name="datasets")


def main() -> None:
    app()
