"""``cdr components``: every registered implementation per interface, with its origin."""

from __future__ import annotations

from rich.table import Table

from cdr.cli.common import console, user_errors
from cdr.components import GROUPS
from cdr.errors import CdrError
from cdr.registry import Registry


@user_errors
def components() -> None:
    """List registered components per interface and where each comes from."""
    registry = Registry()
    table = Table(title="cdr components", show_lines=False)
    table.add_column("interface", style="bold")
    table.add_column("name", style="cyan")
    table.add_column("origin")
    table.add_column("summary")
    for group in GROUPS:
        for origin in registry.origins(group):
            where = "built-in" if origin.builtin else f"plugin: {origin.distribution}"
            try:
                summary = registry.get(group, origin.name).summary
            except CdrError as exc:
                summary = f"[red]{exc}[/]"
            table.add_row(group, origin.name, where, summary)
    console.print(table)
    for conflict in registry.conflicts:
        console.print(f"[red]conflict:[/] {conflict}")
