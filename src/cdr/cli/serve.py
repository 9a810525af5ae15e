"""``cdr export`` and ``cdr recommend``: bundle a finished run, serve top-K as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cdr.cli.common import console, user_errors
from cdr.errors import DataError
from cdr.registry import Registry
from cdr.serving.bundle import Recommender, export_bundle


@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write.")] = Path(
        "model.cdr"
    ),
) -> None:
    """Pack a finished run into a self-contained bundle (config, safetensors, id maps)."""
    path = export_bundle(run_dir, out, Registry())
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def _read_history(path: Path) -> list[tuple[str, float]]:
    """A JSON list of item ids or of {"item": id, "rating": r}; or lines 'item[,rating]'."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such history file") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [line.split(",") for line in text.splitlines() if line.strip()]
    history = []
    for n, entry in enumerate(data, start=1):
        try:
            if isinstance(entry, dict):
                history.append((str(entry["item"]), float(entry.get("rating", 1.0))))
            elif isinstance(entry, list):
                history.append((str(entry[0]).strip(), float(entry[1]) if len(entry) > 1 else 1.0))
            else:
                history.append((str(entry), 1.0))
        except (KeyError, ValueError, IndexError) as exc:
            raise DataError(f"{path}: entry {n}: expected an item id and optional rating") from exc
    return history


@user_errors
def recommend(
    bundle: Annotated[Path, typer.Argument(help="A bundle written by `cdr export`.")],
    user: Annotated[list[str], typer.Option("--user", "-u", help="User id (repeatable).")],
    k: Annotated[int, typer.Option(help="How many items.")] = 20,
    exclude_seen: Annotated[
        bool, typer.Option("--exclude-seen", help="Drop items the user already has.")
    ] = False,
    history: Annotated[
        Path | None,
        typer.Option(help="Auxiliary-domain history of a cold-start user (JSON or CSV)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator's sampling.")] = 0,
) -> None:
    """Top-K target items as JSON, for known users or (with --history) a cold-start user."""
    model = Recommender.load(bundle, Registry())
    if history is not None:
        if len(user) != 1:
            raise DataError("--history serves one cold-start user: give exactly one --user")
        records = [model.recommend_cold(user[0], _read_history(history), k=k, seed=seed)]
    else:
        records = model.recommend_known(user, k=k, exclude_seen=exclude_seen)
    typer.echo(json.dumps([r.to_json() for r in records], indent=2))
