"""Ranks of a gloo process group for ``tests/training/test_distributed.py``.

``torch.multiprocessing`` starts each rank by importing the function it runs, so the ranks'
code lives in this importable module (tests are imported by path). Ranks report what they
saw as JSON files (nothing is pickled back), one per rank.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from cdr.errors import DivergenceError
from cdr.training import loop
from cdr.training.distributed import World, reduce_step, split_rows
from cdr.training.loop import Budget, Stage, fit

#: the least-squares problem of the gradient check: X [ROWS, 3], y [ROWS], replicated c
ROWS, C = 7, 0.3


def problem() -> tuple[Tensor, Tensor, Tensor]:
    """X [7, 3], y [7], w [3] (float64), fixed by a seed."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(ROWS, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(ROWS, generator=gen, dtype=torch.float64)
    w = torch.randn(3, generator=gen, dtype=torch.float64)
    return x, y, w


class Stop(Exception):
    """Raised from ``on_epoch`` on every rank: an interruption at the same epoch everywhere."""


def toy_stage(
    rank: int = 0,
    interrupt_at: int | None = None,
    validated: list[int] | None = None,
    draws: list[float] | None = None,
) -> tuple[Stage[Tensor], nn.Linear]:
    """Float64 linear regression: 45 rows shuffled by a seeded generator into batches of 13,
    16, 16 (13 splits 7 + 6 over two ranks); the loss draws randomness per row and once per
    step (times zero: it changes no value, only the RNG), the latter kept in ``draws``.
    Rank != 0 starts from other weights (the loop must broadcast rank 0's). ``validated``
    collects validation epochs."""
    data = torch.Generator().manual_seed(1)
    x = torch.randn(60, 3, generator=data, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y = y + 0.3 * torch.randn(60, generator=data, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    if rank != 0:
        with torch.no_grad():
            model.weight.add_(1.0)
    gen = torch.Generator().manual_seed(2)
    seen = validated if validated is not None else []
    drawn = draws if draws is not None else []
    epoch_now = [0]

    def batches(epoch: int) -> list[Tensor]:
        epoch_now[0] = epoch
        return list(torch.randperm(45, generator=gen).split([13, 16, 16]))

    def loss(rows: Tensor) -> tuple[Tensor, dict[str, float]]:
        mse = ((model(x[rows]).squeeze(1) - y[rows]) ** 2).mean()
        shared = torch.rand((), dtype=torch.float64)  # the same on every rank, or wrong
        drawn.append(float(shared))
        noise = torch.rand(rows.numel(), dtype=torch.float64).sum() + shared
        return mse + 0.0 * noise, {"mse": float(mse.detach())}

    @torch.no_grad()
    def validate() -> float:
        seen.append(epoch_now[0])
        return float(((model(x[45:]).squeeze(1) - y[45:]) ** 2).mean())

    def on_epoch(epoch: int) -> None:
        if interrupt_at is not None and epoch == interrupt_at:
            raise Stop

    stage: Stage[Tensor] = Stage(
        name="toy",
        module=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        batches=batches,
        loss=loss,
        budget=Budget(10, 1, 3, "min"),
        validate=validate,
        generators={"batches": gen},
        on_epoch=on_epoch,
    )
    return stage, model


def params_of(model: nn.Module) -> list[float]:
    return [float(v) for p in model.parameters() for v in p.detach().flatten()]


class Recorder:
    """A reporter keeping every per-epoch report."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        if total is None:
            self.epochs.append(dict(info))


def _gradient_case(world: World) -> dict[str, Any]:
    """This rank's share of one step of the least-squares problem, reduced."""
    x, y, w0 = problem()
    w = nn.Parameter(w0.clone())
    unused = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    (xs, ys), weight = split_rows((x, y), world)
    mse = ((xs @ w - ys) ** 2).mean()
    loss = mse + C * (w**2).sum()
    loss.backward()
    value, parts = reduce_step(world, [w, unused], loss, {"mse": float(mse)}, weight)
    return {
        "rows": xs.shape[0],
        "weight": weight,
        "grad": w.grad.tolist() if w.grad is not None else None,
        "unused_grad_is_none": unused.grad is None,
        "loss": value,
        "mse": parts["mse"],
    }


def _divergence_case(world: World) -> str:
    """A nan in the last row: only the last rank's shard sees it; every rank must stop at
    the same step with the same message (none may wait forever in a collective)."""
    x, y, w0 = problem()
    y = y.clone()
    y[-1] = float("nan")
    w = nn.Parameter(w0.clone())
    module = nn.Module()
    module.w = w

    def loss(rows: Tensor) -> Tensor:
        return ((x[rows] @ w - y[rows]) ** 2).mean()

    stage: Stage[Tensor] = Stage(
        name="nan",
        module=module,
        optimizer=torch.optim.SGD([w], lr=0.1),
        batches=lambda _: [torch.arange(ROWS - 1), torch.arange(ROWS)],
        loss=loss,
        budget=Budget(2),
    )
    try:
        fit(stage, None)
    except DivergenceError as exc:
        return str(exc)
    return "no error"


def _fit_case(world: World, checkpoints: Path, interrupt_at: int | None) -> dict[str, Any]:
    validated: list[int] = []
    draws: list[float] = []
    stage, model = toy_stage(world.rank, interrupt_at, validated, draws)
    recorder = Recorder()
    saves = [0]
    original = loop.save_checkpoint

    def counting_save(path: Path, state: Any) -> None:
        saves[0] += 1
        original(path, state)

    loop.save_checkpoint = counting_save  # type: ignore[assignment]
    stopped = False
    result: dict[str, Any] = {}
    try:
        out = fit(stage, checkpoints, recorder)
        result = {"best": out.best, "best_epoch": out.best_epoch, "epochs_run": out.epochs_run}
    except Stop:
        stopped = True
    finally:
        loop.save_checkpoint = original
    return {
        "stopped": stopped,
        "result": result,
        "params": params_of(model),
        "reports": recorder.epochs,
        "validated": validated,
        "draws": draws,
        "saves": saves[0],
        "rng": torch.get_rng_state().tolist(),
        "generator": stage.generators["batches"].get_state().tolist(),
    }


def _rank(rank: int, size: int, out: str) -> None:
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    folder = Path(out)
    dist.init_process_group(  # a rank left waiting in a collective fails within a minute
        "gloo",
        init_method=f"file://{folder / 'rendezvous'}",
        rank=rank,
        world_size=size,
        timeout=timedelta(seconds=60),
    )
    try:
        world = World(rank, size, rank)
        report = {
            "gradient": _gradient_case(world),
            "divergence": _divergence_case(world),
            "fit": _fit_case(world, folder / "full", None),
            "interrupted": _fit_case(world, folder / "cut", 4),
        }
    finally:
        dist.destroy_process_group()
    (folder / f"rank{rank}.json").write_text(json.dumps(report))


def run_ranks(size: int, out: Path) -> list[dict[str, Any]]:
    """Start ``size`` gloo ranks running the three cases; each rank's report."""
    out.mkdir(parents=True, exist_ok=True)
    entry: Callable[..., None] = _rank
    mp.start_processes(entry, args=(size, str(out)), nprocs=size, start_method="spawn")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(size)]
