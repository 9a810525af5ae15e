"""Data-parallel training under ``torchrun``: the world a process belongs to, the split of a
batch across its ranks and the one collective of every training step.

``torchrun --nproc-per-node N -m cdr run ...`` (or ``cdr run --nproc N``) starts N copies
of the same run; each learns its place from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). ``process_group`` joins
them (gloo on CPU, nccl on CUDA, one GPU per rank: ``cuda:LOCAL_RANK``) and yields a
``World``; a plain process (no ``WORLD_SIZE`` or 1) gets ``World()`` and nothing is started,
so single-process runs never touch ``torch.distributed``.

The scheme (used by ``cdr.training.loop.fit``):

- **Same global batch on every rank.** Every rank draws the batches of an epoch from the
  same seeded generators (``stage.batches(epoch)``), so all of them hold the *global*
  batch; each keeps its contiguous chunk of rows (``split_rows``: every tensor of the
  batch is cut along dim 0 with ``torch.tensor_split``, so chunk sizes differ by at most
  one). A batch with fewer rows than ranks is not split: every rank takes all of it.
- **Gradients all-reduced explicitly, weighted by rows.** Rank r computes the stage's loss
  on its n_r of the batch's N rows, backpropagates, and contributes ``(n_r / N) * grad``
  to one all-reduce (sum) that also carries the weighted loss and its reported parts. For
  a loss that is a mean over the batch rows plus terms that do not depend on which rows
  a rank holds (computed identically on every rank, e.g. the aligner's InfoNCE over
  replicated anchors or a sub-sample drawn from a stage generator), the result is the
  one-process gradient of the global batch exactly, up to float summation order:
  ``sum_r (n_r/N) grad mean_r = grad mean`` and ``sum_r (n_r/N) grad c = grad c``. Then
  every rank takes the same optimizer step, so parameters never drift apart (they are
  also broadcast from rank 0 when a stage starts).
  Why not ``DistributedDataParallel``: DDP synchronises gradients through hooks armed by
  the wrapped module's ``forward``; cdr's stages compute their loss through other methods
  (``runner.loss``, ``model.represent``, ``regularization``) and closures over several
  modules, which DDP would not see. One explicit all-reduce per step is what DDP does
  (without its bucketing/overlap of communication with backward) and needs no change to
  any stage.
- **Random state stays identical across ranks.** Draws whose size does not depend on the
  shard (INMO's edge dropout over the whole graph, a stage generator's sub-sample) must be
  the same on every rank, so every rank keeps the same global RNG: seeded alike, synced
  from rank 0 when a stage starts, after each validation (run on rank 0 alone) and after
  a step whose shards were unequal (then the ranks consumed different amounts).
- **A stage says whether its batch can be split.** ``Stage.shard`` defaults to
  ``split_rows``; a stage whose batch mixes rows with something that must not be split
  (the backbones' aligner anchors) passes its own function, and ``shard=None`` refuses
  data-parallel training with a ``CompositionError`` naming the stage, so nothing trains
  differently in silence.

Deviations from a one-process run of the same global batch (``docs/scale.md`` measures
them):

- per-row random draws inside a loss (DDPM's timesteps and noise, dropout masks) are drawn
  per shard from the shared RNG: the same distribution, not the same numbers as one
  process (and the same numbers on every rank for the i-th row of its shard);
- a loss that is a mean over something other than the batch rows is weighted by rows: the
  cold-start stage 2 rating term (MuSiC eq. 13, the MSE over the ratings of the batch's
  users, used when lambda < 1), INMO's self-enhancement loss (mean over the rows whose
  templates exist) and SGL's contrastive term (in-batch negatives: each rank sees N/W of
  them) are then estimates of the one-process loss, not equal to it;
- float sums run in another order: equal to one process within float rounding (the tests
  bound it), not bit for bit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import torch
import torch.distributed as dist
from torch import Tensor, nn

from cdr.device import resolve_device
from cdr.errors import CompositionError, ConfigError

B = TypeVar("B")

#: what a shard function returns: this rank's part of the batch and its weight n_r / N
Sharded = tuple[B, float]
Shard = Callable[[B, "World"], "Sharded[B]"]


@attrs.frozen
class World:
    """The processes training one run together. ``rank`` in ``[0, size)``; ``device``: where
    collectives run (CPU for gloo, ``cuda:local_rank`` for nccl). ``World()``: one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> World:
        """The world torchrun describes in the environment (``World()`` outside torchrun);
        the process group is not joined (see ``process_group``)."""
        env = os.environ if environ is None else environ
        size = _env_int(env, "WORLD_SIZE", 1)
        rank = _env_int(env, "RANK", 0)
        local = _env_int(env, "LOCAL_RANK", rank)
        if size < 1 or not 0 <= rank < size or local < 0:
            raise ConfigError(
                f"environment: RANK={rank} LOCAL_RANK={local} WORLD_SIZE={size} is not a "
                "valid torchrun world",
                hint="start data-parallel runs with `cdr run --nproc N` or torchrun",
            )
        return cls(rank, size, local)

    # -- collectives (no-ops for one process) ---------------------------------------------

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: Tensor) -> None:
        """Sum ``tensor`` over the ranks, in place (it must live on ``self.device``)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def broadcast(self, tensor: Tensor) -> Tensor:
        """``tensor`` as rank 0 has it, on every rank (copied through ``self.device``)."""
        if not self.distributed:
            return tensor
        moved = tensor.to(self.device)
        dist.broadcast(moved, src=0)
        if moved is not tensor:
            tensor.copy_(moved)
        return tensor


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment: {name}={raw!r} is not an integer") from None


def current_world() -> World:
    """The world of the joined process group (``World()`` when none is joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    rank, size = dist.get_rank(), dist.get_world_size()
    local = _env_int(os.environ, "LOCAL_RANK", rank)
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    return World(rank, size, local, device)


@contextmanager
def process_group(device: str) -> Iterator[World]:
    """Join the torchrun job of this process for the block: gloo when the run's ``device``
    (``auto``/``cpu``/``cuda``) resolves to CPU, nccl with ``cuda:LOCAL_RANK`` made the
    current device when it resolves to CUDA. One process: ``World()``, nothing started.
    A group joined already (by a caller) is used as is and left open."""
    env = World.from_env()
    if not env.distributed:
        yield World()
        return
    if dist.is_initialized():
        yield current_world()
        return
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if env.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"device: rank {env.rank} needs cuda:{env.local_rank} but "
                f"{torch.cuda.device_count()} CUDA device(s) are visible",
                hint="start at most one process per GPU (--nproc), or use --set device=cpu",
            )
        torch.cuda.set_device(env.local_rank)
        backend, where = "nccl", torch.device("cuda", env.local_rank)
    else:
        backend, where = "gloo", torch.device("cpu")
    dist.init_process_group(backend)  # env:// rendezvous: torchrun's MASTER_ADDR/PORT
    try:
        yield World(env.rank, env.size, env.local_rank, where)
    finally:
        dist.destroy_process_group()


def share_path(world: World, path: Path | None) -> Path:
    """Rank 0's ``path`` on every rank (run directory names hold a timestamp, so ranks must
    not each make their own). Sent as UTF-8 bytes in a tensor: nothing is unpickled."""
    if not world.distributed:
        if path is None:
            raise ValueError("share_path: no path on the only rank")
        return path
    data = os.fsencode(str(path)) if world.is_main and path is not None else b""
    length = world.broadcast(torch.tensor([len(data)], dtype=torch.long))
    raw = torch.zeros(int(length.item()), dtype=torch.uint8)
    if world.is_main:
        raw.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    world.broadcast(raw)
    return Path(os.fsdecode(bytes(raw.tolist())))


@contextmanager
def follower_run_dir(world: World, run_dir: Path, checkpoints: str) -> Iterator[Path]:
    """The run directory a rank other than 0 runs in: a private scratch directory (deleted
    afterwards) whose ``checkpoints`` entry links to the real run's, so every rank reads
    the checkpoints rank 0 writes while everything else it would write goes nowhere."""
    with tempfile.TemporaryDirectory(prefix=f"cdr-rank{world.rank}-") as scratch:
        path = Path(scratch)
        (path / checkpoints).symlink_to(run_dir.resolve() / checkpoints, target_is_directory=True)
        yield path


# -- the batch split -----------------------------------------------------------------------


def split_rows(batch: B, world: World) -> Sharded[B]:
    """This rank's contiguous chunk of ``batch`` and its weight n_r / N.

    ``batch``: a tensor or nested tuples / lists / dicts of them (None, numbers and
    strings are kept as they are); every tensor with a dim is cut along dim 0, so all must
    have the same first dim N (a ``CompositionError`` says which differ). N < world size:
    every rank keeps the whole batch with weight 1 / size.
    """
    sizes = sorted({int(t.shape[0]) for t in _tensors(batch) if t.dim() > 0})
    if not sizes:
        raise CompositionError(
            "data-parallel training: the batch holds no tensor with rows to split",
            hint="give the stage a shard function (Stage.shard) or run it in one process",
        )
    if len(sizes) > 1:
        raise CompositionError(
            f"data-parallel training: the batch's tensors have different first dims "
            f"{sizes}; which of them are rows is ambiguous",
            hint="give the stage a shard function (Stage.shard) or run it in one process",
        )
    rows = sizes[0]
    if not world.distributed:
        return batch, 1.0
    if rows < world.size:
        return batch, 1.0 / world.size
    bounds = torch.tensor_split(torch.arange(rows), world.size)[world.rank]
    start, stop = int(bounds[0]), int(bounds[-1]) + 1
    return _slice(batch, start, stop), (stop - start) / rows


def _tensors(batch: Any) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for value in batch.values():
            yield from _tensors(value)
    elif isinstance(batch, tuple | list):
        for value in batch:
            yield from _tensors(value)
    elif not (batch is None or isinstance(batch, bool | int | float | str)):
        raise CompositionError(
            f"data-parallel training: cannot split a batch holding a {type(batch).__name__}",
            hint="give the stage a shard function (Stage.shard) or run it in one process",
        )


def _slice(batch: Any, start: int, stop: int) -> Any:
    if isinstance(batch, Tensor):
        return batch[start:stop] if batch.dim() > 0 else batch
    if isinstance(batch, Mapping):
        return {key: _slice(value, start, stop) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(_slice(value, start, stop) for value in batch))
    if isinstance(batch, tuple):
        return tuple(_slice(value, start, stop) for value in batch)
    if isinstance(batch, list):
        return [_slice(value, start, stop) for value in batch]
    return batch


def uneven(weight: float, world: World) -> bool:
    """Whether the ranks' shards differ in size (then none has weight exactly 1 / size, since
    sizes are N // size or one more): they consumed different amounts of randomness."""
    return world.distributed and abs(weight * world.size - 1.0) > 1e-12


# -- synchronisation -----------------------------------------------------------------------


def trained_parameters(optimizer: torch.optim.Optimizer | None) -> list[nn.Parameter]:
    """The parameters ``optimizer`` updates (each once), in its order."""
    if optimizer is None:
        return []
    seen: dict[int, nn.Parameter] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.requires_grad:
                seen.setdefault(id(param), param)
    return list(seen.values())


def _random_states(generators: Mapping[str, torch.Generator], world: World) -> list[Tensor]:
    """uint8 states: the global CPU RNG, the current CUDA device's (nccl), the stage's."""
    states = [torch.get_rng_state()]
    if world.device.type == "cuda":
        states.append(torch.cuda.get_rng_state(world.device))
    states.extend(generators[key].get_state() for key in sorted(generators))
    return states


def _set_random_states(
    states: Sequence[Tensor], generators: Mapping[str, torch.Generator], world: World
) -> None:
    # own storage: a state given as a view at an offset into a larger buffer is misread
    values = (state.to("cpu", torch.uint8).clone() for state in states)
    torch.set_rng_state(next(values))
    if world.device.type == "cuda":
        torch.cuda.set_rng_state(next(values), world.device)
    for key in sorted(generators):
        generators[key].set_state(next(values))


def sync_random_state(world: World, generators: Mapping[str, torch.Generator]) -> None:
    """Every rank takes rank 0's global RNG state and stage generators' states."""
    if not world.distributed:
        return
    states = _random_states(generators, world)
    flat = world.broadcast(torch.cat(states).to(world.device))
    _set_random_states(_unflatten(flat.cpu(), states), generators, world)


def sync_module(world: World, module: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (one broadcast per tensor)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            world.broadcast(tensor)


def shared_value(world: World, compute: Callable[[], float]) -> float:
    """``compute()`` on rank 0, its value on every rank (validation: run once, and every
    rank makes the same early-stopping decision)."""
    if not world.distributed:
        return float(compute())
    value = float(compute()) if world.is_main else float("nan")
    return float(world.broadcast(torch.tensor([value], dtype=torch.float64)).item())


def _unflatten(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, at = [], 0
    for tensor in like:
        out.append(flat[at : at + tensor.numel()].view_as(tensor))
        at += tensor.numel()
    return out


def reduce_step(
    world: World,
    params: Sequence[nn.Parameter],
    loss: Tensor,
    parts: Mapping[str, float],
    weight: float,
    generators: Mapping[str, torch.Generator] | None = None,
) -> tuple[float, dict[str, float]]:
    """The one collective of a training step: sums ``weight * grad`` of ``params`` (their
    ``.grad`` is replaced by the sum: the global batch's gradient), ``weight * loss`` and
    ``weight * parts`` over the ranks; returns the global loss and parts. A parameter with
    no gradient on any rank keeps ``grad = None`` (Adam then skips it, as in one process).
    ``generators`` (given after a step with unequal shards): every rank also takes rank
    0's global RNG and these generators' states, in the same all-reduce."""
    grads = [p.grad for p in params]
    dtypes = [loss.dtype, *(g.dtype for g in grads if g is not None)]
    dtype = dtypes[0]
    for other in dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    dev = world.device
    pieces = [
        loss.detach().reshape(1).to(dev, dtype) * weight,
        torch.tensor([float(v) for v in parts.values()], dtype=dtype, device=dev) * weight,
    ]
    for param, grad in zip(params, grads, strict=True):
        if grad is None:
            pieces.append(torch.zeros(param.numel(), dtype=dtype, device=dev))
        else:
            dense = grad.to_dense() if grad.is_sparse else grad
            pieces.append(dense.reshape(-1).to(dev, dtype) * weight)
    flags = [0.0 if g is None else 1.0 for g in grads]
    pieces.append(torch.tensor(flags, dtype=dtype, device=dev))
    states: list[Tensor] = []
    if generators is not None:
        states = _random_states(generators, world)
        raw = torch.cat(states).to(dev, dtype)
        pieces.append(raw if world.is_main else torch.zeros_like(raw))
    buf = torch.cat(pieces)
    world.all_reduce_sum(buf)
    head = buf[: 1 + len(parts)].tolist()  # the loss and its parts, one device sync
    value, out_parts = head[0], dict(zip(parts, head[1:], strict=True))
    at = 1 + len(parts)
    flat_grads = []
    for param in params:
        flat_grads.append(buf[at : at + param.numel()])
        at += param.numel()
    has_grad = buf[at : at + len(params)].tolist()  # one device sync for all flags
    at += len(params)
    for param, flat, flag in zip(params, flat_grads, has_grad, strict=True):
        if flag > 0:
            param.grad = flat.view_as(param).to(param.device, param.dtype).clone()
    if generators is not None:
        size = sum(s.numel() for s in states)
        received = buf[at : at + size].round().to("cpu", torch.uint8)
        _set_random_states(_unflatten(received, states), generators, world)
    return value, out_parts
