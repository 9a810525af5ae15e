"""The one training loop every stage of every pipeline runs through.

A stage brings what is its own: the module, the optimizer, the batches of an epoch and
``loss(batch)``; the loop owns the rest, the same for all (as RecBole's Trainer serves all
its models):

- epochs with an optional per-epoch hook (INMO's template-weight schedule);
- validation every ``eval_every`` epochs and on the last, early stopping with patience,
  the best state restored at the end;
- divergence detection: a non-finite loss, parameter (checked after every epoch) or
  validation value stops the stage with a ``DivergenceError`` naming the stage, epoch and
  step; the last good checkpoint is kept;
- checkpoints (safetensors + JSON, ``cdr.training.checkpoint``) in the run directory:
  ``<stage>.last`` after every evaluated epoch (module, optimizer, RNG states, the
  stopper), ``<stage>.done`` once the stage has finished (its restored best state).
  A resumed run skips finished stages and continues an interrupted one at the epoch after
  its last checkpoint, with every RNG where it was: the final metrics equal an
  uninterrupted run's, byte for byte;
- progress reports (losses, validation value) to the run's reporter;
- data-parallel training when the process is one rank of a torchrun job
  (``cdr.training.distributed``): every rank draws the same global batch and keeps its
  chunk of rows (``Stage.shard``), one all-reduce per step sums the row-weighted gradients,
  loss and parts, so all ranks take the same step; validation runs on rank 0 and its value
  is broadcast (the same early-stopping decision everywhere); rank 0 alone writes
  checkpoints and reports. A checkpoint holds the plain module state and the shared RNG
  states, nothing per rank, so a run resumes with any number of ranks. With one process
  the loop runs exactly as it did without any of this.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import attrs
import torch
from torch import Tensor, nn

from cdr.errors import CompositionError, DivergenceError
from cdr.progress import Reporter, null_reporter
from cdr.training.checkpoint import (
    SUFFIX,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cdr.training.distributed import (
    Shard,
    World,
    current_world,
    reduce_step,
    shared_value,
    split_rows,
    sync_module,
    sync_random_state,
    trained_parameters,
    uneven,
)
from cdr.training.early_stopping import EarlyStopping

B = TypeVar("B")

#: what ``loss(batch)`` returns: the loss, or the loss and named parts to report
LossOutput = Tensor | tuple[Tensor, Mapping[str, float]]


@attrs.frozen
class Budget:
    """How long a stage may train and how it selects: ``patience`` evaluations without
    improvement stop it; ``mode`` says whether the validation value is better high or low."""

    epochs: int
    eval_every: int = 1
    patience: int = 5
    mode: Literal["min", "max"] = "min"


@attrs.frozen
class FitResult:
    """How a stage ended. ``best``: the selected validation value (nan without validation);
    ``best_epoch``: 0-based (-1 without validation); ``epochs_run``: epochs trained in all
    sessions; ``resumed_at``: the epoch this session started from; ``skipped``: the stage
    had finished in an earlier session and was restored from its checkpoint."""

    best: float
    best_epoch: int
    epochs_run: int
    resumed_at: int = 0
    skipped: bool = False

    def in_last_tenth(self, budget: Budget) -> bool:
        """Whether the selected epoch falls in the last 10% of the budget (too small)."""
        return self.best_epoch >= 0 and self.best_epoch + 1 > 0.9 * budget.epochs


@attrs.frozen
class Stage(Generic[B]):
    """One training stage: ``name`` keys its checkpoints and names it in errors.

    ``shard``: this rank's part of a batch and its weight under data-parallel training
    (``cdr.training.distributed``); the default cuts every tensor of the batch along its
    rows, exact for a loss that is a mean over the rows plus terms that do not depend on
    them. None: the batch cannot be split (a ``CompositionError`` under torchrun).
    """

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer | None
    batches: Callable[[int], Iterable[B]]
    loss: Callable[[B], LossOutput]
    budget: Budget
    validate: Callable[[], float] | None = None
    generators: Mapping[str, torch.Generator] = attrs.field(factory=dict)
    on_epoch: Callable[[int], None] | None = None
    task: str | None = None
    shard: Shard[B] | None = split_rows


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.last{SUFFIX}", directory / f"{name}.done{SUFFIX}"


def _restore_common(stage: Stage[Any], state: Mapping[str, Any]) -> None:
    stage.module.load_state_dict(state["module"])
    for key, gen in stage.generators.items():
        gen.set_state(state["generators"][key])
    set_rng_state(state["rng"])


def fit(
    stage: Stage[B],
    checkpoints: Path | None = None,
    report: Reporter = null_reporter,
    world: World | None = None,
) -> FitResult:
    """Train ``stage`` (see the module docstring); ``checkpoints``: the run's checkpoint
    directory (None: no checkpoints, no resume); ``world``: the data-parallel job this
    process is a rank of (default: the joined torch.distributed group, else one process)."""
    world = current_world() if world is None else world
    if world.distributed and stage.shard is None:
        raise CompositionError(
            f"stage {stage.name!r}: its batches cannot be split across {world.size} ranks",
            hint="run it in one process (without --nproc / torchrun)",
        )
    if not world.is_main:
        report = null_reporter
    task = stage.task or stage.name
    budget = stage.budget
    last_path = done_path = None
    world.barrier()  # no rank reads a checkpoint that rank 0 is still writing
    if checkpoints is not None:
        last_path, done_path = _paths(checkpoints, stage.name)
        if done_path.exists():
            state = load_checkpoint(done_path)
            _restore_common(stage, state)
            stage.module.eval()
            result = state["result"]
            report(task, advance=budget.epochs, total=budget.epochs)
            return FitResult(
                float(result["best"]),
                int(result["best_epoch"]),
                int(result["epochs_run"]),
                int(result["epochs_run"]),
                skipped=True,
            )
    stopper = EarlyStopping(budget.patience, mode=budget.mode)
    start = 0
    if last_path is not None and last_path.exists():
        state = load_checkpoint(last_path)
        _restore_common(stage, state)
        if stage.optimizer is not None:
            stage.optimizer.load_state_dict(state["optimizer"])
        s = state["stopper"]
        stopper.best, stopper.best_epoch, stopper.bad_epochs = s["best"], s["best_epoch"], s["bad"]
        stopper.best_state = state.get("best_state")
        start = int(state["epoch"]) + 1
    sync_module(world, stage.module)
    sync_random_state(world, stage.generators)
    params = trained_parameters(stage.optimizer) if world.distributed else []
    report(task, advance=start, total=budget.epochs)
    resumed_at, epoch, stop = start, start - 1, False
    for epoch in range(start, budget.epochs):
        if stage.on_epoch is not None:
            stage.on_epoch(epoch)
        stage.module.train()
        sums: dict[str, float] = {}
        steps = 0
        for step, batch in enumerate(stage.batches(epoch)):
            if world.distributed:
                value, shared = _parallel_step(stage, batch, world, params)
                if not math.isfinite(value):
                    raise _diverged(stage.name, f"loss is {value}", epoch, step, last_path)
                if stage.optimizer is not None:
                    stage.optimizer.step()
                steps += 1
                for key, part in {"loss": value, **shared}.items():
                    sums[key] = sums.get(key, 0.0) + float(part)
                continue
            out = stage.loss(batch)
            loss, parts = out if isinstance(out, tuple) else (out, {})
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _diverged(stage.name, f"loss is {value}", epoch, step, last_path)
            if stage.optimizer is not None:
                stage.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                stage.optimizer.step()
            steps += 1
            for key, part in {"loss": value, **parts}.items():
                sums[key] = sums.get(key, 0.0) + float(part)
        if steps and not _finite(stage.module):
            raise _diverged(stage.name, "parameters became non-finite", epoch, None, last_path)
        info = {key: total / max(steps, 1) for key, total in sums.items()}
        evaluate = stage.validate is not None and (
            (epoch + 1) % budget.eval_every == 0 or epoch + 1 == budget.epochs
        )
        if evaluate:
            assert stage.validate is not None
            stage.module.eval()
            with torch.no_grad():
                val = shared_value(world, stage.validate)
            # rank 0 alone validated: every rank takes its random state again
            sync_random_state(world, stage.generators)
            if math.isnan(val):
                raise _diverged(stage.name, "validation value is nan", epoch, None, last_path)
            info["val"] = val
            stop = stopper.step(val, epoch, stage.module)
        if last_path is not None and world.is_main and (evaluate or stage.validate is None):
            save_checkpoint(
                last_path,
                {
                    "module": stage.module.state_dict(),
                    "optimizer": stage.optimizer.state_dict() if stage.optimizer else {},
                    "generators": {k: g.get_state() for k, g in stage.generators.items()},
                    "rng": rng_state(),
                    "epoch": epoch,
                    "stopper": {
                        "best": stopper.best,
                        "best_epoch": stopper.best_epoch,
                        "bad": stopper.bad_epochs,
                    },
                    **({"best_state": stopper.best_state} if stopper.best_state else {}),
                },
            )
        report(task, 1, None, **info)
        if stop:
            break
    stopper.restore(stage.module)
    stage.module.eval()
    result = FitResult(
        stopper.best if stopper.best_epoch >= 0 else math.nan,
        stopper.best_epoch,
        epoch + 1,
        resumed_at,
    )
    if done_path is not None and last_path is not None and world.is_main:
        save_checkpoint(
            done_path,
            {
                "module": stage.module.state_dict(),
                "generators": {k: g.get_state() for k, g in stage.generators.items()},
                "rng": rng_state(),
                "result": {
                    "best": result.best,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                },
            },
        )
        last_path.unlink(missing_ok=True)
    world.barrier()  # the other ranks wait for rank 0's checkpoint
    return result


def _parallel_step(
    stage: Stage[B], batch: B, world: World, params: list[nn.Parameter]
) -> tuple[float, dict[str, float]]:
    """This rank's share of one step of the global ``batch``: its rows' loss and gradient,
    summed with the other ranks' (row-weighted) in one all-reduce; the global loss and
    parts. The caller checks the loss and steps the optimizer (the same on every rank)."""
    assert stage.shard is not None  # checked by fit
    try:
        part, weight = stage.shard(batch, world)
    except CompositionError as exc:
        raise CompositionError(f"stage {stage.name!r}: {exc}", hint=exc.hint) from None
    out = stage.loss(part)
    loss, parts = out if isinstance(out, tuple) else (out, {})
    if stage.optimizer is not None:
        stage.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    # unequal shards drew different amounts of randomness: all take rank 0's afterwards
    sync = stage.generators if uneven(weight, world) else None
    return reduce_step(world, params, loss, parts, weight, sync)


def _finite(module: nn.Module) -> bool:
    """Whether every parameter is finite (one device sync for all of them)."""
    flags = [torch.isfinite(p).all() for p in module.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _diverged(
    stage: str, what: str, epoch: int, step: int | None, last: Path | None
) -> DivergenceError:
    where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
    kept = (
        f"; the last good checkpoint is kept ({last})" if last is not None and last.exists() else ""
    )
    return DivergenceError(
        f"{stage}: {what} at {where}{kept}",
        hint="lower the learning rate (trainer.lr) or check the input data",
    )
