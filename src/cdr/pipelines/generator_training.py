"""The generator's two training stages (MuSiC 3.4), shared by the cold-start and the
composed pipelines; they differ only in how ratings are read off vectors and in the
validation metric used for selection.

Stage 1 (eq. 11): the unconditional loss on side users' target vectors.
Stage 2 (eq. 12-13): ``lambda * conditional loss + (1 - lambda) * rating MSE`` of generated
vectors on overlapping training users; early stopping on a validation metric only.
Both run through the shared loop (``cdr.training.loop``): checkpoints ``stage1`` and
``stage2`` in the run's checkpoint directory, resumed where a run was interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from cdr.config.experiment import TrainerConfig
from cdr.progress import Reporter
from cdr.training.loop import Budget, FitResult, Stage, fit


class UserBatches:
    """Shuffled batches of user ids, from one seeded generator (CPU), moved to ``device``."""

    def __init__(self, batch_size: int, seed: int, device: torch.device) -> None:
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, users: Tensor) -> list[Tensor]:
        perm = users[torch.randperm(users.numel(), generator=self.generator)]
        return [
            perm[s : s + self.batch_size].to(self.device)
            for s in range(0, perm.numel(), self.batch_size)
        ]


def train_side_users(
    generator: nn.Module,
    runner: Any,
    side_users: Tensor,
    trainer: TrainerConfig,
    batches: UserBatches,
    report: Reporter,
    checkpoints: Path | None,
    task: str = "stage 1: side users",
) -> FitResult | None:
    """Stage 1: ``trainer.epochs`` epochs of the unconditional loss over side users
    (None when there is nothing to train: no parameters or no side users)."""
    params = [p for p in generator.parameters() if p.requires_grad]
    if not params or side_users.numel() == 0:
        return None
    stage: Stage[Tensor] = Stage(
        name="stage1",
        module=generator,
        optimizer=torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay),
        batches=lambda _: batches(side_users),
        loss=lambda users: runner.loss(users, conditional=False),
        budget=Budget(trainer.epochs),
        generators={"batches": batches.generator},
        task=task,
    )
    return fit(stage, checkpoints, report)


def train_overlapping_users(
    generator: nn.Module,
    runner: Any,
    train_users: Tensor,
    trainer: TrainerConfig,
    batches: UserBatches,
    joint_weight: float,
    rating_loss: Callable[[Tensor, Tensor], Tensor],
    validate: Callable[[], float],
    mode: Literal["min", "max"],
    checkpoints: Path | None,
    report: Reporter,
    task: str = "stage 2: overlapping users",
) -> FitResult:
    """Stage 2 with selection on ``validate()`` (``mode``: which way is better).

    ``rating_loss(vectors [B, D], users [B])`` is the MSE of ratings read off generated
    vectors; the best state is restored at the end.
    """
    params = [p for p in generator.parameters() if p.requires_grad]
    if not params:
        generator.eval()
        with torch.no_grad():
            return FitResult(validate(), 0, 0)
    lam = joint_weight

    def loss(users: Tensor) -> Tensor:
        total = torch.zeros((), device=users.device)
        if lam > 0:
            total = total + lam * runner.loss(users, conditional=True)
        if lam < 1:
            total = total + (1 - lam) * rating_loss(runner.generate(users), users)
        return total

    stage: Stage[Tensor] = Stage(
        name="stage2",
        module=generator,
        optimizer=torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay),
        batches=lambda _: batches(train_users),
        loss=loss,
        budget=Budget(trainer.epochs, trainer.eval_every, trainer.patience, mode),
        validate=validate,
        generators={"batches": batches.generator},
        task=task,
    )
    return fit(stage, checkpoints, report)
