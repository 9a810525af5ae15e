"""``cdr config show|validate``: the resolved config as TOML, or a check of a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax

from cdr.cli.common import ConfigOpt, SetOpt, console, user_errors
from cdr.composition import plan
from cdr.config import config_to_toml, load_experiment
from cdr.registry import Registry

config_app = typer.Typer(help="Show or validate experiment configs.", no_args_is_help=True)


@config_app.command("show")
@user_errors
def show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (packaged default <- FILE <- --set) as TOML."""
    registry = Registry()
    cfg = load_experiment(config, registry, set_ or [])
    console.print(Syntax(config_to_toml(cfg, registry), "toml"))


@config_app.command("validate")
@user_errors
def validate(
    path: Annotated[Path, typer.Argument(help="Config file to check.", dir_okay=False)],
    set_: SetOpt = None,
) -> None:
    """Check a config file: every unknown key, wrong type or bad value is one line; a
    combination no protocol runs is refused with why."""
    registry = Registry()
    protocol = plan(load_experiment(path, registry, set_ or []), registry)
    console.print(f"[green]ok[/] {path} [dim](protocol {protocol.name})[/]")
