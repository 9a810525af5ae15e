"""Distributed encoding on Ray Data: ``cdr encode --engine ray``.

What it does. A row encoder's feature matrix is cached in chunks of rows ``[start, stop)``
(``cdr.encoders.cache``); the chunks not yet on disk become a Ray Dataset with one row per
chunk holding that chunk's inputs (prompts, image paths...). ``map_batches`` hands them, one
chunk per call, to a pool of ``num_workers`` actors. Each actor builds the encoder once from
its registered component (the same ``Component.build`` the single-process path calls; weights
load on its first chunk, onto its GPU when Ray gave it one) and embeds a chunk with the same
``embed_rows`` loop (length-sorted batches under ``inference_mode``). The driver writes each
chunk into the cache as soon as it streams back, then hands over to the single-process
``encode_features``, which finds every chunk present, embeds nothing and assembles and saves
the finished matrix exactly as it always does.

Why this shape:

* The cache format is unchanged, so the run that follows (``cdr run``, ``cdr encode``
  without Ray) reads the features as a cache hit, and either engine resumes the other's
  partial work.
* Resume is chunk-grained: a chunk is written atomically the moment it arrives, so after a
  crash, a kill or Ctrl-C only the chunks that were not written are computed again.
* Features equal the single-process path's bit for bit on the same device, dtype and chunk
  size: a chunk holds the same rows and is cut into the same batches (same padding).
* One chunk per ``map_batches`` call keeps the unit of work, of fault tolerance and of
  progress the same as the unit of resume.
* Chunk features come back as raw float32 bytes (``[stop - start, dim]`` row-major) in a
  binary Arrow column: no tensor extension types, and nothing is pickled on the way back.

Limits (deviations from "everything runs on the cluster"):

* Only row encoders (``plm``, ``image``, ``llm``, ``mllm`` and plugins built on
  ``RowEncoder``) are distributed. Encoders that need the whole domain at once (``id``: one
  SVD of the interaction matrix; plugins that are not row encoders) run in the driver as in
  the single-process path; a composite encoder (``fusion``) distributes each of its parts.
* Image inputs are file paths: on a multi-node cluster the data directory must be mounted at
  the same path on every node. The cache directory is only written by the driver.
* The resources asked for must be in the cluster when the run starts (a pool that cannot
  be placed would wait forever); an autoscaling cluster has to be scaled up first.
* Inputs that Arrow cannot represent (the image and mllm encoders' small records) travel
  in Ray Data's pickled-object column: this is Ray's own inter-process transport of objects
  the driver built, never a file a user handed in.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, cast

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.data.records import Domain
from cdr.encoders.batching import RowEncoder, embed_rows
from cdr.encoders.cache import FeatureCache, digest, inputs_digest, row_keys
from cdr.encoders.features import (
    DEFAULT_CACHE_ROOT,
    DEFAULT_CHUNK_SIZE,
    CompositeEncoder,
    EncodeResult,
    Shard,
    build_encoder,
    encode_features,
)
from cdr.errors import CdrError, ConfigError
from cdr.interfaces import Entity
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry

#: the optional dependency group that brings Ray (``pip install 'cdr[distributed]'``).
EXTRA = "distributed"


def import_ray() -> ModuleType:
    """The ``ray`` module with ``ray.data`` loaded; a one-line error naming the extra if absent."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray, which is not installed: pip install 'cdr[{EXTRA}]'"
        ) from exc
    return ray


@attrs.frozen
class RayEngine:
    """Where and how wide to encode.

    address: None starts a new local Ray for the run, stopped at its end (never one that
    ``ray start`` left on this machine, which a plain ``ray.init()`` would join); otherwise
    the cluster to join (``auto``, ``host:6379``, ``ray://host:10001``). num_workers:
    encoder actors.
    cpus_per_worker / gpus_per_worker: Ray resources of each actor; ``gpus_per_worker=None``
    gives each actor one GPU when the cluster has one per actor, an equal share when it has
    fewer, and none on a cluster without GPUs.
    """

    address: str | None = None
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.num_workers < 1:
            raise ConfigError(f"--num-workers: {self.num_workers} must be >= 1")
        if not self.cpus_per_worker > 0:
            raise ConfigError(f"--cpus-per-worker: {self.cpus_per_worker} must be > 0")
        if self.gpus_per_worker is not None and not self.gpus_per_worker >= 0:
            raise ConfigError(f"--gpus-per-worker: {self.gpus_per_worker} must be >= 0")
        if self.address is not None and not self.address.strip():
            raise ConfigError("--address: empty (omit it to start a local Ray)")


class RayCluster:
    """A Ray connection opened on first use, so a run that only hits the cache never starts Ray.

    If Ray is already initialised in this process (a notebook, a test), that session is used
    and left running; otherwise ``ray.init`` starts a local Ray or joins ``engine.address``,
    and ``close`` (or leaving the ``with`` block) shuts it down again.
    """

    def __init__(self, engine: RayEngine) -> None:
        self.engine = engine
        self._ray: ModuleType | None = None
        self._owned = False
        self._gpus_per_worker = 0.0
        #: rows the actor pools of this session have encoded (a caller can tell which
        #: matrices went through Ray: encoders that are not distributed leave it unchanged)
        self.rows_encoded = 0

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self._ray is not None

    @property
    def gpus_per_worker(self) -> float:
        """GPUs each actor gets (resolved against the cluster once it is started)."""
        return self._gpus_per_worker

    def start(self) -> ModuleType:
        """Start or join Ray (once) and check the actor pool fits the cluster."""
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if not ray.is_initialized():
            self._init(ray)
        self._ray = ray
        try:
            self._gpus_per_worker = self._fit(ray.cluster_resources())
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # progress goes through cdr's reporter
            context.enable_operator_progress_bars = False
            context.print_on_execution_start = False
            # Ray Data logs each execution at INFO and says progress bars are off at WARNING
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        except BaseException:
            self.close()
            raise
        return ray

    def _init(self, ray: ModuleType) -> None:
        engine = self.engine
        quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        try:
            if engine.address is None:
                ray.init(address="local", include_dashboard=False, **quiet)
            else:
                ray.init(address=engine.address, **quiet)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = "a local Ray" if engine.address is None else f"--address {engine.address}"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = None
            if engine.address is not None:
                hint = (
                    "is the cluster up (`ray status` on its head)? A cluster started with "
                    "`ray start` (Ray >= 2.59) needs RAY_AUTH_MODE=token here too"
                )
            raise ConfigError(f"{where}: Ray did not start ({first})", hint=hint) from exc
        self._owned = True

    def _fit(self, resources: dict[str, float]) -> float:
        engine = self.engine
        cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
        need = engine.num_workers * engine.cpus_per_worker
        if need > cpus:
            raise ConfigError(
                f"--num-workers {engine.num_workers} x --cpus-per-worker "
                f"{engine.cpus_per_worker:g} needs {need:g} CPUs; the Ray cluster has {cpus:g}",
                hint="ask for fewer workers or fewer CPUs per worker",
            )
        if engine.gpus_per_worker is None:
            return 0.0 if gpus == 0 else min(1.0, gpus / engine.num_workers)
        if engine.num_workers * engine.gpus_per_worker > gpus:
            raise ConfigError(
                f"--gpus-per-worker {engine.gpus_per_worker:g} x {engine.num_workers} workers "
                f"needs {engine.num_workers * engine.gpus_per_worker:g} GPUs; "
                f"the Ray cluster has {gpus:g}"
            )
        return engine.gpus_per_worker

    def close(self) -> None:
        if self._ray is not None and self._owned:
            self._ray.shutdown()
        self._ray, self._owned = None, False


class ChunkEncoder:
    """The Ray actor: builds the encoder once, then embeds one chunk of rows per call.

    Input batch (pyarrow): ``start``, ``stop`` (int64), ``inputs`` (the chunk's inputs,
    None = a zero row). Output: ``start``, ``stop``, ``dim`` and ``features``, the chunk's
    features [stop - start, dim] as float32 bytes in row-major order; ``error``: null, or a
    user-fixable error (``CdrError``: a missing model file...) as JSON, raised again by the
    driver as the same one-line error (Ray Data would pass on only its traceback text).
    """

    def __init__(self, component: Component[Any, Any], config: EncoderConfig, device: str):
        encoder = component.build(config, BuildContext(device=torch.device(device)))
        self.encoder = cast(RowEncoder, encoder)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        starts = batch.column("start").to_pylist()
        stops = batch.column("stop").to_pylist()
        features: list[bytes] = []
        errors: list[str | None] = []
        for rows_in in batch.column("inputs").to_pylist():
            try:
                rows = embed_rows(self.encoder, list(rows_in))  # [stop - start, dim]
            except CdrError as exc:  # Ray Data keeps only the text of a UDF's exception
                features.append(b"")
                errors.append(json.dumps(_error_record(exc)))
                continue
            features.append(rows.float().contiguous().numpy().tobytes())
            errors.append(None)
        dim = self.encoder.dim if any(e is None for e in errors) else 0
        return pa.table(
            {
                "start": pa.array(starts, pa.int64()),
                "stop": pa.array(stops, pa.int64()),
                "dim": pa.array([dim] * len(starts), pa.int64()),
                "features": pa.array(features, pa.large_binary()),
                "error": pa.array(errors, pa.string()),
            }
        )


def _error_record(exc: CdrError) -> dict[str, str | None]:
    cls = type(exc)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "message": str(exc), "hint": exc.hint}


def _error_from_record(text: str) -> CdrError:
    """The actor's user-fixable error, as its own class when that is importable here."""
    record = json.loads(text)
    module, _, name = str(record["class"]).partition(":")
    cls: Any = CdrError
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        found = None
    if isinstance(found, type) and issubclass(found, CdrError):
        cls = found
    return cast(CdrError, cls(record["message"], hint=record["hint"]))


def _unpack(blob: bytes, rows: int, dim: int) -> Tensor:
    """float32 bytes -> [rows, dim] (a copy the caller owns)."""
    return torch.frombuffer(bytearray(blob), dtype=torch.float32).reshape(rows, dim)


def _has(obj: object, name: str) -> bool:
    try:
        inspect.getattr_static(obj, name)
    except AttributeError:
        return False
    return True


def encode_features_ray(
    config: EncoderConfig,
    registry: Registry,
    domain: Domain,
    entity: Entity,
    *,
    cluster: RayCluster,
    cache_root: Path = DEFAULT_CACHE_ROOT,
    device: torch.device | None = None,
    reporter: Reporter | None = None,
    shard: Shard | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncodeResult:
    """``encode_features`` with the missing chunks computed by a Ray actor pool.

    Same arguments and result as ``cdr.encoders.features.encode_features``. The actors run
    on their GPU when Ray gave them one, else on CPU; ``device`` is the driver's (encoders
    that are not distributed run there). ``computed_rows`` counts the rows encoded by this
    call, ``resumed_rows`` those found on disk when it began.
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size: {chunk_size!r} must be > 0")
    report = reporter or null_reporter
    start = time.perf_counter()
    encoder = build_encoder(config, registry)  # the driver's copy: plans only, no weights
    if _has(encoder, "parts") and _has(encoder, "combine"):
        parts = [
            encode_features_ray(
                part,
                registry,
                domain,
                entity,
                cluster=cluster,
                cache_root=cache_root,
                device=device,
                reporter=report,
                shard=shard,
                chunk_size=chunk_size,
            )
            for part in cast(CompositeEncoder, encoder).parts
        ]
        computed = sum(p.computed_rows for p in parts)
        resumed = sum(p.resumed_rows for p in parts)
        return _finish(
            config,
            registry,
            domain,
            entity,
            cache_root,
            device,
            report,
            shard,
            chunk_size,
            start,
            computed,
            resumed,
        )
    if not isinstance(encoder, RowEncoder):  # whole-domain encoders run here, as before
        return encode_features(
            config, registry, domain, entity, cache_root=cache_root, device=device, reporter=report
        )

    plan = encoder.plan(domain, entity)
    cache = FeatureCache.for_config(cache_root, config, inputs_digest(plan.inputs))
    # the finished matrix's name, as cdr.encoders.features._encode_rows writes it
    finished = cache.result_path(f"{entity}-{digest(plan.finish_key, entity)[:16]}")
    n = len(plan.inputs)
    chunks = [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
    mine = shard.select(chunks) if shard is not None else chunks
    done = cache.completed_chunks()
    todo = [c for c in mine if c not in done]
    resumed = sum(stop - s for s, stop in mine if (s, stop) in done)
    computed = 0
    if todo and not finished.exists():
        task = f"encode {domain.name} {entity}s ({config.kind}, ray)"
        report(task, advance=resumed, total=sum(stop - s for s, stop in mine), resumed=resumed)
        component = registry.get("encoders", config.kind)
        computed = _run_chunks(cluster, component, config, plan.inputs, todo, cache, report, task)
    return _finish(
        config,
        registry,
        domain,
        entity,
        cache_root,
        device,
        report,
        shard,
        chunk_size,
        start,
        computed,
        resumed,
    )


def _run_chunks(
    cluster: RayCluster,
    component: Component[Any, Any],
    config: EncoderConfig,
    inputs: Sequence[Any | None],
    todo: list[tuple[int, int]],
    cache: FeatureCache,
    report: Reporter,
    task: str,
) -> int:
    """Encode the ``todo`` chunks on the actor pool, writing each as it arrives; rows done."""
    ray = cluster.start()
    engine = cluster.engine
    gpus = cluster.gpus_per_worker
    items = [{"start": s, "stop": e, "inputs": list(inputs[s:e])} for s, e in todo]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    encoded = dataset.map_batches(
        ChunkEncoder,
        fn_constructor_kwargs={
            "component": component,
            "config": config,
            "device": "cuda" if gpus > 0 else "cpu",
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=engine.num_workers),
        num_cpus=engine.cpus_per_worker,
        num_gpus=gpus,
    )
    began = time.perf_counter()
    written = 0
    batches: Iterator[Any] = iter(
        encoded.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0)
    )
    try:
        for batch in batches:
            names = ("start", "stop", "dim", "features", "error")
            columns = [batch.column(c).to_pylist() for c in names]
            for s, stop, dim, blob, error in zip(*columns, strict=True):
                if error is not None:
                    raise _error_from_record(error)
                rows = _unpack(blob, stop - s, dim)
                cache.save_chunk(s, stop, rows, row_keys(inputs[s:stop]))
                written += stop - s
                cluster.rows_encoded += stop - s
                rate = written / max(time.perf_counter() - began, 1e-9)
                report(task, advance=stop - s, items_per_s=rate)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stop the streaming execution (an interrupted run)
    return written


def _finish(
    config: EncoderConfig,
    registry: Registry,
    domain: Domain,
    entity: Entity,
    cache_root: Path,
    device: torch.device | None,
    report: Reporter,
    shard: Shard | None,
    chunk_size: int,
    start: float,
    computed: int,
    resumed: int,
) -> EncodeResult:
    """Assemble through the single-process path (every chunk now on disk: nothing embedded
    there unless a chunk was corrupt) and account for the rows Ray computed."""
    result = encode_features(
        config,
        registry,
        domain,
        entity,
        cache_root=cache_root,
        device=device,
        reporter=report,
        shard=shard,
        chunk_size=chunk_size,
    )
    return attrs.evolve(
        result,
        cached=result.cached and computed == 0,
        computed_rows=computed + result.computed_rows,
        resumed_rows=resumed if not result.cached else 0,
        seconds=time.perf_counter() - start,
    )
