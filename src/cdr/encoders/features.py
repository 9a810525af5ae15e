"""``compute_features``: an encoder config + a domain -> cached feature matrix.

Row encoders (``RowEncoder``: plm, image, llm, mllm) are computed in chunks of rows that are
saved as they complete, so an interrupted run resumes after the last completed chunk and
``shard=Shard(k, n)`` computes only the k-th of n contiguous parts (several machines can fill
one cache directory; the run that finds every chunk present assembles the result).
Composite encoders (fusion) compute and cache each part, then combine. Any other Encoder
(``id``, plugins) is cached whole.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, EncoderConfig
from cdr.data.records import Domain
from cdr.encoders.batching import RowEncoder, embed_rows
from cdr.encoders.cache import (
    FeatureCache,
    RowBank,
    digest,
    domain_digest,
    inputs_digest,
    row_keys,
)
from cdr.errors import ConfigError, PluginError
from cdr.interfaces import Encoder, Entity
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry

DEFAULT_CACHE_ROOT = Path(".cache/features")
DEFAULT_CHUNK_SIZE = 1024


class CompositeEncoder(Protocol):
    """An encoder made of other encoders' features (e.g. fusion)."""

    @property
    def parts(self) -> Sequence[EncoderConfig]: ...

    def combine(self, features: Sequence[Tensor], entity: Entity) -> Tensor: ...


@attrs.frozen
class Shard:
    """Part ``index`` (1-based) of ``count`` contiguous parts of the rows."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(f"shard: {self.index}/{self.count} is not k/n with 1 <= k <= n")

    @classmethod
    def parse(cls, text: str) -> Shard:
        k, sep, n = text.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"--shard: {text!r} is not k/n (e.g. 1/4)")
        return cls(int(k), int(n))

    def select(self, chunks: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        lo = (self.index - 1) * len(chunks) // self.count
        hi = self.index * len(chunks) // self.count
        return list(chunks[lo:hi])


@attrs.frozen(eq=False)
class EncodeResult:
    """features: [rows, D], or None when a shard left other shards' chunks missing;
    cached: served from the cache without encoding; computed_rows: rows encoded now;
    reused_rows: rows of this run's chunks taken from other cache entries (``RowBank``)."""

    features: Tensor | None
    cached: bool
    rows: int
    computed_rows: int
    resumed_rows: int
    missing_chunks: int
    cache_dir: Path | None
    seconds: float
    reused_rows: int = 0


def build_encoder(
    config: EncoderConfig, registry: Registry, device: torch.device | None = None
) -> Encoder:
    """The encoder ``config`` names (weights load lazily, on first use)."""
    component = registry.get("encoders", config.kind)
    ctx = BuildContext(device=device or torch.device("cpu"))
    encoder = component.build(config, ctx)
    # Static look-ups: isinstance(encoder, Encoder) would evaluate ``dim``, which loads weights.
    if not (_has(encoder, "dim") and callable(_has(encoder, "encode"))):
        raise PluginError(f"encoder {config.kind!r} does not implement cdr.interfaces.Encoder")
    return cast(Encoder, encoder)


def _has(obj: object, name: str) -> Any:
    try:
        return inspect.getattr_static(obj, name)
    except AttributeError:
        return None


def compute_features(
    config: EncoderConfig,
    registry: Registry,
    domain: Domain,
    entity: Entity,
    *,
    cache_root: Path = DEFAULT_CACHE_ROOT,
    device: torch.device | None = None,
    reporter: Reporter | None = None,
) -> Tensor:
    """Features of ``domain``'s items [num_items, D] or users [num_users, D], from the cache
    when an entry for this config and content exists (the reporter is told), else encoded
    and cached."""
    result = encode_features(
        config, registry, domain, entity, cache_root=cache_root, device=device, reporter=reporter
    )
    if result.features is None:  # cannot happen without a shard: every chunk is computed
        raise RuntimeError(f"encoder {config.kind!r}: features incomplete without a shard")
    return result.features


def encode_features(
    config: EncoderConfig,
    registry: Registry,
    domain: Domain,
    entity: Entity,
    *,
    cache_root: Path = DEFAULT_CACHE_ROOT,
    device: torch.device | None = None,
    reporter: Reporter | None = None,
    shard: Shard | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncodeResult:
    """``compute_features`` with the details: shards, chunk size, what came from the cache."""
    if entity not in ("item", "user"):
        raise ConfigError(f"entity: {entity!r} is not 'item' or 'user'")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: {chunk_size!r} must be > 0")
    report = reporter or null_reporter
    encoder = build_encoder(config, registry, device)
    start = time.perf_counter()
    if _has(encoder, "parts") is not None and _has(encoder, "combine") is not None:
        return _encode_composite(
            cast(CompositeEncoder, encoder),
            registry,
            domain,
            entity,
            cache_root,
            device,
            report,
            shard,
            chunk_size,
            start,
        )
    if isinstance(encoder, RowEncoder):
        return _encode_rows(
            config, encoder, domain, entity, cache_root, report, shard, chunk_size, start
        )
    return _encode_whole(config, encoder, domain, entity, cache_root, report, start)


def _task(config: EncoderConfig, domain: Domain, entity: Entity) -> str:
    return f"encode {domain.name} {entity}s ({config.kind})"


def _hit(
    report: Reporter, task: str, features: Tensor, cache: FeatureCache, start: float
) -> EncodeResult:
    rows = features.shape[0]
    report(f"{task}: cache hit", advance=rows, total=rows, cached=1.0)
    return EncodeResult(features, True, rows, 0, 0, 0, cache.path, time.perf_counter() - start)


def _encode_whole(
    config: EncoderConfig,
    encoder: Encoder,
    domain: Domain,
    entity: Entity,
    cache_root: Path,
    report: Reporter,
    start: float,
) -> EncodeResult:
    cache = FeatureCache.for_config(cache_root, config, digest(domain_digest(domain), entity))
    path = cache.result_path(entity)
    task = _task(config, domain, entity)
    cached = cache.load(path)
    if cached is not None:
        return _hit(report, task, cached, cache, start)
    features = encoder.encode(domain, entity, report).float().cpu()
    cache.save(path, features)
    rows = features.shape[0]
    return EncodeResult(features, False, rows, rows, 0, 0, cache.path, time.perf_counter() - start)


def _encode_rows(
    config: EncoderConfig,
    encoder: RowEncoder,
    domain: Domain,
    entity: Entity,
    cache_root: Path,
    report: Reporter,
    shard: Shard | None,
    chunk_size: int,
    start: float,
) -> EncodeResult:
    plan = encoder.plan(domain, entity)
    cache = FeatureCache.for_config(cache_root, config, inputs_digest(plan.inputs))
    path = cache.result_path(f"{entity}-{digest(plan.finish_key, entity)[:16]}")
    task = _task(config, domain, entity)
    cached = cache.load(path)
    if cached is not None:
        return _hit(report, task, cached, cache, start)

    n = len(plan.inputs)
    chunks = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    mine = shard.select(chunks) if shard is not None else chunks
    done = cache.completed_chunks()
    todo = [c for c in mine if c not in done]
    resumed = sum(stop - s for s, stop in mine if (s, stop) in done)
    report(task, advance=resumed, total=sum(stop - s for s, stop in mine), resumed=resumed)
    bank: RowBank | None = None  # read on the first chunk to compute, not on a resume
    reused = 0
    for s, stop in todo:
        if bank is None:
            bank = RowBank.collect(cache, config)
        keys = row_keys(plan.inputs[s:stop])  # [stop - s, KEY_BYTES]
        found = bank.lookup(keys)  # rows other splits / datasets already encoded
        needed = [None if i in found else x for i, x in enumerate(plan.inputs[s:stop])]
        rows = embed_rows(encoder, needed, reporter=report, task=task, total=n)
        for i, row in found.items():
            rows[i] = row
        reused += len(found)
        cache.save_chunk(s, stop, rows, keys)
    if reused:
        report(task, advance=0, reused=reused)
    computed = sum(stop - s for s, stop in todo) - reused

    done = cache.completed_chunks()
    missing = [c for c in chunks if c not in done]
    seconds = time.perf_counter() - start
    if missing:
        return EncodeResult(
            None, False, n, computed, resumed, len(missing), cache.path, seconds, reused
        )
    parts = [cache.load(cache.chunk_path(s, stop)) for s, stop in chunks]
    if any(p is None for p in parts):  # a chunk vanished or is corrupt: recompute it
        for (s, stop), p in zip(chunks, parts, strict=True):
            if p is None:
                cache.chunk_path(s, stop).unlink(missing_ok=True)
        return _encode_rows(
            config, encoder, domain, entity, cache_root, report, shard, chunk_size, start
        )
    rows = torch.cat(cast(list[Tensor], parts)) if parts else torch.zeros(0, encoder.dim)
    features = plan.finish(rows)
    cache.save(path, features)
    return EncodeResult(
        features,
        False,
        features.shape[0],
        computed,
        resumed,
        0,
        cache.path,
        time.perf_counter() - start,
        reused,
    )


def _encode_composite(
    encoder: CompositeEncoder,
    registry: Registry,
    domain: Domain,
    entity: Entity,
    cache_root: Path,
    device: torch.device | None,
    report: Reporter,
    shard: Shard | None,
    chunk_size: int,
    start: float,
) -> EncodeResult:
    results = [
        encode_features(
            part,
            registry,
            domain,
            entity,
            cache_root=cache_root,
            device=device,
            reporter=report,
            shard=shard,
            chunk_size=chunk_size,
        )
        for part in encoder.parts
    ]
    computed = sum(r.computed_rows for r in results)
    resumed = sum(r.resumed_rows for r in results)
    missing = sum(r.missing_chunks for r in results)
    cached = all(r.cached for r in results)
    features: Any = None
    if missing == 0:
        features = encoder.combine([cast(Tensor, r.features) for r in results], entity)
    rows = results[0].rows if results else 0
    seconds = time.perf_counter() - start
    reused = sum(r.reused_rows for r in results)
    return EncodeResult(features, cached, rows, computed, resumed, missing, None, seconds, reused)
