"""The shared training loop: early stopping, divergence, checkpoints and exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cdr.errors import DivergenceError
from cdr.training.loop import Budget, Stage, fit


class _Interrupt(Exception):
    pass


def _stage(
    epochs: int = 8,
    lr: float = 0.05,
    poison_at: int | None = None,
    interrupt_after: int | None = None,
    seen_epochs: list[int] | None = None,
) -> tuple[Stage[Tensor], nn.Linear]:
    """Linear regression on a fixed problem, shuffled batches from a seeded generator,
    dropout-free; validation = MSE on a held-out set (lower is better)."""
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=data)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(64, generator=data)
    model = nn.Linear(3, 1)
    gen = torch.Generator().manual_seed(2)
    epochs_seen = seen_epochs if seen_epochs is not None else []

    def batches(epoch: int) -> list[Tensor]:
        epochs_seen.append(epoch)
        if interrupt_after is not None and epoch == interrupt_after + 1:
            raise _Interrupt
        perm = torch.randperm(48, generator=gen)
        return list(perm.split(16))

    def loss(rows: Tensor) -> Tensor:
        value = ((model(x[rows]).squeeze(1) - y[rows]) ** 2).mean()
        # global RNG in the loss (as DDPM's noise): resume must restore it too
        value = value + 0.0 * torch.rand(())
        if poison_at is not None and len(epochs_seen) - 1 >= poison_at:
            value = value * math.nan
        return value

    @torch.no_grad()
    def validate() -> float:
        return float(((model(x[48:]).squeeze(1) - y[48:]) ** 2).mean())

    stage: Stage[Tensor] = Stage(
        name="toy",
        module=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=lr),
        batches=batches,
        loss=loss,
        budget=Budget(epochs, 1, 3, "min"),
        validate=validate,
        generators={"batches": gen},
    )
    return stage, model


def test_loss_decreases_and_best_state_is_restored(tmp_path: Path) -> None:
    stage, _ = _stage()
    result = fit(stage, tmp_path)
    assert result.best_epoch >= 0 and result.epochs_run == 8
    assert stage.validate is not None
    assert stage.validate() == pytest.approx(result.best)
    assert (tmp_path / "toy.done.safetensors").exists()
    assert not (tmp_path / "toy.last.safetensors").exists()


def test_interrupted_stage_resumes_where_it_stopped_and_matches_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    whole, whole_model = _stage()
    fit(whole, tmp_path / "whole")
    seen: list[int] = []
    first, _ = _stage(interrupt_after=3, seen_epochs=seen)
    with pytest.raises(_Interrupt):
        fit(first, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "toy.last.safetensors").exists()
    seen.clear()
    second, resumed_model = _stage(seen_epochs=seen)
    result = fit(second, tmp_path / "resumed")
    assert seen[0] == 4 and result.resumed_at == 4  # epochs 0-3 were not run again
    for name, value in whole_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    # a finished stage is restored, not retrained
    seen.clear()
    third, again = _stage(seen_epochs=seen)
    skipped = fit(third, tmp_path / "resumed")
    assert skipped.skipped and seen == []
    assert torch.equal(again.weight, whole_model.weight)


def test_nan_loss_stops_with_a_named_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    stage, _ = _stage(poison_at=2)
    with pytest.raises(DivergenceError) as info:
        fit(stage, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("toy: loss is nan at epoch 3, step 1")
    assert "last good checkpoint" in message
    from cdr.training.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "toy.last.safetensors")["epoch"] == 1
    assert not (tmp_path / "toy.done.safetensors").exists()


def test_patience_stops_early_and_every_evaluation_is_checkpointed(tmp_path: Path) -> None:
    stage, _ = _stage(epochs=60, lr=0.5)
    result = fit(stage, tmp_path)
    # patience 3: stopped 4 evaluations after the best one (or at the budget)
    assert result.epochs_run == min(60, result.best_epoch + 1 + 4)
