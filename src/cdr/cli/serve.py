"""``cdr export`` and ``cdr recommend``: bundle a finished run, serve top-K as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdr.cli.common import console, user_errors
from cdr.errors import InputError
from cdr.registry import Registry
from cdr.serving.bundle import Recommender, dumps, export_bundle
from cdr.serving.history import read_history


@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Bundle file to write (must not exist yet).")
    ] = Path("model.cdr"),
) -> None:
    """Pack a finished run into a self-contained bundle (config, safetensors, id maps).

    The bundle is checked before it is written, atomically; an existing --out is refused.
    """
    path = export_bundle(run_dir, out, Registry())
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


@user_errors
def recommend(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `cdr export`.")],
    user: Annotated[list[str], typer.Option("--user", "-u", help="User id (repeatable).")],
    k: Annotated[
        int, typer.Option(help="How many items (fewer if fewer remain after --exclude-seen).")
    ] = 20,
    exclude_seen: Annotated[
        bool, typer.Option("--exclude-seen", help="Drop items the user already has.")
    ] = False,
    history: Annotated[
        Path | None,
        typer.Option(
            help="Auxiliary-domain history of a cold-start user: a JSON list of item ids, "
            '[item, rating] pairs or {"item": id, "rating": r} objects, a JSON object '
            "{item: rating}, or a .csv of lines item[,rating]. Ratings: numbers in (0, 1e6]; "
            "each item once; every item known to the bundle."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator's sampling.")] = 0,
) -> None:
    """Top-K target items as JSON, for known users or (with --history) a cold-start user."""
    if k < 1:
        raise InputError(f"--k {k}: must be at least 1")
    if history is not None and len(user) != 1:
        raise InputError("--history serves one cold-start user: give exactly one --user")
    cold_history = read_history(history) if history is not None else None
    model = Recommender.load(bundle, Registry())
    if cold_history is not None:
        records = [model.recommend_cold(user[0], cold_history, k=k, seed=seed)]
    else:
        records = model.recommend_known(user, k=k, exclude_seen=exclude_seen)
    typer.echo(dumps(records))
