"""``cdr compose``: pick components by name, show the composition, train and evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import attrs
import typer
from rich.tree import Tree

from cdr.cli.common import ConfigOpt, SetOpt, console, reporter, user_errors
from cdr.cli.run import TrackingOpt, TrackingUriOpt, metrics_table
from cdr.composition import plan
from cdr.config import ExperimentConfig, load_experiment
from cdr.container import SLOTS
from cdr.registry import Registry
from cdr.tracking import check_tracking, run_tracked


def _choice(help_: str) -> Any:
    return typer.Option(help=f"{help_} (a registered name; see `cdr components`).")


def composition_tree(cfg: ExperimentConfig, registry: Registry) -> Tree:
    """The resolved composition: every slot with its component, origin and settings."""
    tree = Tree(f"[bold]experiment[/] {cfg.name}  [dim](seed {cfg.seed}, device {cfg.device})[/]")
    for slot, (group, path) in SLOTS.items():
        section: Any = cfg
        for attr in path:
            section = getattr(section, attr)
        origin = next(o for o in registry.origins(group) if o.name == section.kind)
        where = "built-in" if origin.builtin else f"plugin {origin.distribution}"
        branch = tree.add(f"[bold]{slot}[/]: [cyan]{section.kind}[/] [dim]({where})[/]")
        for field in attrs.fields(type(section)):
            if field.name != "kind":
                branch.add(f"{field.name} = {getattr(section, field.name)!r}")
    for name in ("split", "trainer", "evaluation"):
        section = getattr(cfg, name)
        branch = tree.add(f"[bold]{name}[/]")
        for field in attrs.fields(type(section)):
            branch.add(f"{field.name} = {getattr(section, field.name)!r}")
    return tree


@user_errors
def compose(
    generator: Annotated[str | None, _choice("Generator")] = None,
    backbone: Annotated[str | None, _choice("Graph backbone")] = None,
    aligner: Annotated[str | None, _choice("Cross-domain aligner")] = None,
    scorer: Annotated[str | None, _choice("Scorer")] = None,
    encoder: Annotated[str | None, _choice("Item-content encoder")] = None,
    user_encoder: Annotated[str | None, _choice("User-content encoder")] = None,
    dataset: Annotated[str | None, _choice("Dataset provider")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory to create (default: output_dir/name-time).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Resolve and show the composition; train nothing.")
    ] = False,
    tracking: TrackingOpt = "none",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Compose a model from named components, then train and evaluate it.

    Example: cdr compose --generator ddpm --backbone inmo --dry-run
    """
    registry = Registry()
    check_tracking(tracking)
    chosen = {
        "generator": generator,
        "backbone": backbone,
        "aligner": aligner,
        "scorer": scorer,
        "encoders.item": encoder,
        "encoders.user": user_encoder,
        "dataset": dataset,
    }
    cfg = load_experiment(
        config, registry, set_ or [], {k: v for k, v in chosen.items() if v is not None}
    )
    # refuse a combination that cannot work before showing or training it
    protocol = plan(cfg, registry)
    console.print(composition_tree(cfg, registry))
    stages = " -> ".join(stage.name for stage in protocol.stages)
    console.print(f"[dim]protocol:[/] {protocol.name}  [dim]({stages})[/]")
    if dry_run:
        return
    with reporter() as progress:
        record = run_tracked(
            cfg, registry, tracking=tracking, tracking_uri=tracking_uri,
            reporter=progress, run_dir=out,
        )
    console.print(metrics_table(record))
