"""``cdr encode``: precompute the configured encoders' features into the feature cache.

Runs ``encoders.item`` on every domain's items and ``encoders.user`` on its users (full
interactions; pipelines encode again on their training view and hit the cache for items).
``--shard k/n`` computes only part k of n, so several machines can fill one cache directory;
an interrupted run resumes after its last completed chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from cdr.cli.common import ConfigOpt, SetOpt, console, reporter, user_errors
from cdr.config import load_experiment
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.encoders.features import DEFAULT_CACHE_ROOT, DEFAULT_CHUNK_SIZE, Shard, encode_features
from cdr.errors import ConfigError
from cdr.interfaces import Entity
from cdr.registry import Registry

DOMAINS = ("source", "target")
ENTITIES: tuple[Entity, ...] = ("item", "user")


def _pick(value: str, choices: tuple[str, ...], option: str) -> tuple[str, ...]:
    if value == "both":
        return choices
    if value not in choices:
        raise ConfigError(f"{option}: {value!r} is not one of {', '.join(choices)}, both")
    return (value,)


@user_errors
def encode(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    domain: Annotated[str, typer.Option(help="Domain: source, target or both.")] = "both",
    entity: Annotated[str, typer.Option(help="Entity: item, user or both.")] = "both",
    shard: Annotated[
        str | None, typer.Option(help="Compute only part k of n (e.g. 1/4) of each matrix.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N] or auto.")] = "cpu",
    cache_dir: Annotated[
        Path, typer.Option(help="Feature cache directory.", file_okay=False)
    ] = DEFAULT_CACHE_ROOT,
    chunk_size: Annotated[
        int, typer.Option(help="Rows per saved chunk (the unit of resume).", min=1)
    ] = DEFAULT_CHUNK_SIZE,
) -> None:
    """Encode items and users with the configured encoders into the feature cache."""
    registry = Registry()
    cfg = load_experiment(config, registry, set_ or [])
    part = Shard.parse(shard) if shard else None
    target_device = resolve_device(device)
    domains = _pick(domain, DOMAINS, "--domain")
    entities = _pick(entity, ENTITIES, "--entity")
    table = Table("domain", "entity", "encoder", "shape", "from", "seconds", "rows/s")
    with reporter() as rep:
        dataset = load_dataset(cfg.dataset, registry, reporter=rep)
        for name in domains:
            data = getattr(dataset, name)
            for ent in cast(tuple[Entity, ...], entities):
                enc = cfg.encoders.item if ent == "item" else cfg.encoders.user
                result = encode_features(
                    enc,
                    registry,
                    data,
                    ent,
                    cache_root=cache_dir,
                    device=target_device,
                    reporter=rep,
                    shard=part,
                    chunk_size=chunk_size,
                )
                if result.cached:
                    source = "cache hit"
                else:
                    source = f"encoded {result.computed_rows}"
                    if result.resumed_rows:
                        source += f", resumed {result.resumed_rows}"
                    if result.missing_chunks:
                        source += f", {result.missing_chunks} chunks left to other shards"
                shape = (
                    "-" if result.features is None else "x".join(map(str, result.features.shape))
                )
                rate = result.computed_rows / result.seconds if result.computed_rows else 0.0
                table.add_row(
                    f"{data.name} ({name})",
                    ent,
                    enc.kind,
                    shape,
                    source,
                    f"{result.seconds:.2f}",
                    f"{rate:.1f}" if rate else "-",
                )
    console.print(table)
    console.print(f"features cached under {cache_dir}")
