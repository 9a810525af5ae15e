"""``cdr encode``: precompute the configured encoders' features into the feature cache.

Runs ``encoders.item`` on every domain's items and ``encoders.user`` on its users (full
interactions; pipelines encode again on their training view and hit the cache for items).
``--shard k/n`` computes only part k of n, so several machines can fill one cache directory;
an interrupted run resumes after its last completed chunk. ``--engine ray`` computes the
chunks on a pool of Ray actors (a local Ray, or the cluster at ``--address``) and writes the
same cache (``cdr.encoders.ray_engine``); the single-process engine stays the default.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.table import Table

from cdr.cli.common import ConfigOpt, SetOpt, console, reporter, user_errors
from cdr.config import load_experiment
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.encoders.features import (
    DEFAULT_CACHE_ROOT,
    DEFAULT_CHUNK_SIZE,
    EncodeResult,
    Shard,
    encode_features,
)
from cdr.encoders.ray_engine import RayCluster, RayEngine, encode_features_ray, import_ray
from cdr.errors import ConfigError
from cdr.interfaces import Entity
from cdr.registry import Registry

DOMAINS = ("source", "target")
ENTITIES: tuple[Entity, ...] = ("item", "user")
ENGINES = ("single", "ray")


def _pick(value: str, choices: tuple[str, ...], option: str) -> tuple[str, ...]:
    if value == "both":
        return choices
    if value not in choices:
        raise ConfigError(f"{option}: {value!r} is not one of {', '.join(choices)}, both")
    return (value,)


def _engine(
    engine: str,
    address: str | None,
    num_workers: int | None,
    cpus_per_worker: float | None,
    gpus_per_worker: float | None,
) -> RayEngine | None:
    """The Ray settings for ``--engine ray`` (Ray must be importable), None for ``single``."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}")
    given = {
        "--address": address,
        "--num-workers": num_workers,
        "--cpus-per-worker": cpus_per_worker,
        "--gpus-per-worker": gpus_per_worker,
    }
    if engine == "single":
        used = [k for k, v in given.items() if v is not None]
        if used:
            raise ConfigError(f"{used[0]} is only used with --engine ray")
        return None
    import_ray()  # fail before loading any data
    return RayEngine(
        address=address,
        num_workers=2 if num_workers is None else num_workers,
        cpus_per_worker=1.0 if cpus_per_worker is None else cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
    )


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
    engine: Annotated[
        str, typer.Option(help="single (one process, the default) or ray (an actor pool).")
    ] = "single",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (auto, host:6379, ray://host:10001); "
            "without it --engine ray starts a local Ray."
        ),
    ] = None,
    num_workers: Annotated[
        int | None, typer.Option(help="Ray encoder actors (default 2).", min=1)
    ] = None,
    cpus_per_worker: Annotated[
        float | None, typer.Option(help="CPUs per Ray actor (default 1).")
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            help="GPUs per Ray actor (default: one each, or a share, if the "
            "cluster has GPUs; else 0)."
        ),
    ] = None,
) -> None:
    """Encode items and users with the configured encoders into the feature cache."""
    ray_engine = _engine(engine, address, num_workers, cpus_per_worker, gpus_per_worker)
    registry = Registry()
    cfg = load_experiment(config, registry, set_ or [])
    part = Shard.parse(shard) if shard else None
    target_device = resolve_device(device)
    domains = _pick(domain, DOMAINS, "--domain")
    entities = _pick(entity, ENTITIES, "--entity")
    table = Table("domain", "entity", "encoder", "shape", "from", "seconds", "rows/s")
    with ExitStack() as stack:
        rep = stack.enter_context(reporter())
        cluster = None
        if ray_engine is not None:
            cluster = stack.enter_context(RayCluster(ray_engine))
        dataset = load_dataset(cfg.dataset, registry, reporter=rep)
        for name in domains:
            data = getattr(dataset, name)
            for ent in cast(tuple[Entity, ...], entities):
                enc = cfg.encoders.item if ent == "item" else cfg.encoders.user
                result: EncodeResult
                on_ray = cluster.rows_encoded if cluster is not None else 0
                if cluster is not None:
                    result = encode_features_ray(
                        enc,
                        registry,
                        data,
                        ent,
                        cluster=cluster,
                        cache_root=cache_dir,
                        device=target_device,
                        reporter=rep,
                        shard=part,
                        chunk_size=chunk_size,
                    )
                else:
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
                    if cluster is not None and cluster.rows_encoded > on_ray:
                        source += f" ({cluster.rows_encoded - on_ray} on Ray)"
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
