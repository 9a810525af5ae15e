"""Run one experiment: plan the composition, make a run directory, run its pipeline.

A run directory is never overwritten: a new run gets a fresh directory; ``resume`` continues
an unfinished one from its saved ``config.toml`` (pipelines pick up their checkpoints).
``status.json`` says whether a run finished ("done"), is still "running" (or was killed),
was "interrupted" (Ctrl-C) or "failed" (with the one-line reason, e.g. a diverging loss).

Under torchrun (``cdr run --nproc N``) every rank runs the whole experiment and the
training loop splits each batch across them (``cdr.training.distributed``); rank 0 alone
makes and writes the run directory (its name is sent to the other ranks), which run in a
private scratch directory whose ``checkpoints`` link to the real run's, so they read what
rank 0 checkpoints and write nothing that lasts.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import attrs

from cdr.composition import plan
from cdr.config import ExperimentConfig, config_to_toml, structure_experiment
from cdr.errors import RunError
from cdr.pipelines.context import run_protocol
from cdr.progress import Reporter
from cdr.protocols import ProtocolSpec
from cdr.registry import Registry
from cdr.runs import (
    CHECKPOINTS,
    CONFIG,
    METRICS,
    atomic_write_text,
    create_run_dir,
    read_json,
    write_json,
)
from cdr.seeding import seed_everything
from cdr.training.distributed import World, follower_run_dir, process_group, share_path

STATUS = "status.json"


@attrs.frozen
class RunRecord:
    """A finished run: where it is, which protocol ran, its flat test metrics."""

    run_dir: Path
    pipeline: str
    metrics: dict[str, float]


def run_status(run_dir: Path) -> dict[str, Any]:
    return read_json(run_dir / STATUS) if (run_dir / STATUS).exists() else {}


def run_experiment(
    cfg: ExperimentConfig,
    registry: Registry,
    *,
    reporter: Reporter | None = None,
    run_dir: Path | None = None,
) -> RunRecord:
    """Train and evaluate ``cfg`` in a new run directory (``run_dir`` must not exist yet;
    under torchrun rank 0's ``run_dir`` is the one used)."""
    protocol = plan(cfg, registry)
    with process_group(cfg.device) as world:
        if world.is_main:
            run_dir = _new_run_dir(cfg, run_dir)
            atomic_write_text(run_dir / CONFIG, config_to_toml(cfg, registry))
        run_dir = share_path(world, run_dir)
        return _execute(cfg, registry, protocol, run_dir, reporter, world)


def _new_run_dir(cfg: ExperimentConfig, run_dir: Path | None) -> Path:
    if run_dir is None:
        return create_run_dir(Path(cfg.output_dir), cfg.name)
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError as exc:
        raise RunError(
            f"{run_dir}: already exists; runs are never overwritten",
            hint="use `cdr run --resume DIR` to continue it, or choose another --out",
        ) from exc
    return run_dir


def resume_experiment(
    run_dir: Path, registry: Registry, *, reporter: Reporter | None = None
) -> RunRecord:
    """Continue an interrupted run from its ``config.toml``; a finished run is returned as is."""
    path = run_dir / CONFIG
    if not path.exists():
        raise RunError(f"{path}: missing; not a cdr run directory")
    cfg = structure_experiment(tomllib.loads(path.read_text()), registry)
    protocol = plan(cfg, registry)
    status = run_status(run_dir)
    if status.get("state") == "done":
        metrics = {k: float(v) for k, v in read_json(run_dir / METRICS).items() if _is_number(v)}
        return RunRecord(run_dir, protocol.name, metrics)
    with process_group(cfg.device) as world:
        return _execute(cfg, registry, protocol, run_dir, reporter, world)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _execute(
    cfg: ExperimentConfig,
    registry: Registry,
    protocol: ProtocolSpec,
    run_dir: Path,
    reporter: Reporter | None,
    world: World,
) -> RunRecord:
    if not world.is_main:
        seed_everything(cfg.seed)
        with follower_run_dir(world, run_dir, CHECKPOINTS) as scratch:
            metrics = run_protocol(protocol, cfg, registry, scratch, None)
        return RunRecord(run_dir, protocol.name, metrics)
    started = time.time()
    running = {"state": "running", "pipeline": protocol.name, "started": started}
    write_json(run_dir / STATUS, running)
    seed_everything(cfg.seed)
    try:
        metrics = run_protocol(protocol, cfg, registry, run_dir, reporter)
    except BaseException as exc:
        # the status says why; checkpoints written so far stay for --resume
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        write_json(
            run_dir / STATUS,
            {
                "state": "interrupted" if interrupted else "failed",
                "pipeline": protocol.name,
                "started": started,
                "seconds": round(time.time() - started, 3),
                "reason": reason,
                "error": type(exc).__name__,
            },
        )
        raise
    write_json(
        run_dir / STATUS,
        {
            "state": "done",
            "pipeline": protocol.name,
            "started": started,
            "seconds": round(time.time() - started, 3),
        },
    )
    return RunRecord(run_dir, protocol.name, metrics)
