"""The generator's two training stages (MuSiC 3.4), shared by the cold-start and the
composed pipelines; they differ only in how ratings are read off vectors and in the
validation metric used for selection.

Stage 1 (eq. 11): the unconditional loss on side users' target vectors.
Stage 2 (eq. 12-13): ``lambda * conditional loss + (1 - lambda) * rating MSE`` of generated
vectors on overlapping training users; early stopping on a validation metric only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cdr.config.experiment import TrainerConfig
from cdr.progress import Reporter
from cdr.runs import save_checkpoint
from cdr.training.early_stopping import EarlyStopping


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
    task: str = "stage 1: side users",
) -> None:
    """Stage 1: ``trainer.epochs`` epochs of the unconditional loss over side users."""
    params = [p for p in generator.parameters() if p.requires_grad]
    if not params or side_users.numel() == 0:
        return
    opt = torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay)
    generator.train()
    for _ in range(trainer.epochs):
        for users in batches(side_users):
            loss = runner.loss(users, conditional=False)
            opt.zero_grad()
            loss.backward()
            opt.step()
        report(task, total=trainer.epochs, loss=loss.item())


def train_overlapping_users(
    generator: nn.Module,
    runner: Any,
    train_users: Tensor,
    trainer: TrainerConfig,
    batches: UserBatches,
    joint_weight: float,
    rating_loss: Callable[[Tensor, Tensor], Tensor],
    validate: Callable[[], float],
    stopper: EarlyStopping,
    best_path: Path,
    report: Reporter,
    task: str = "stage 2: overlapping users",
) -> EarlyStopping:
    """Stage 2 with selection on ``validate()`` (the stopper's mode says which way is better).

    ``rating_loss(vectors [B, D], users [B])`` is the MSE of ratings read off generated
    vectors; the best state is kept in memory and written to ``best_path``.
    """
    params = [p for p in generator.parameters() if p.requires_grad]
    if not params:
        generator.eval()
        stopper.best, stopper.best_epoch = validate(), 0
        return stopper
    lam = joint_weight
    opt = torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay)
    for epoch in range(trainer.epochs):
        generator.train()
        for users in batches(train_users):
            loss = torch.zeros((), device=users.device)
            if lam > 0:
                loss = loss + lam * runner.loss(users, conditional=True)
            if lam < 1:
                loss = loss + (1 - lam) * rating_loss(runner.generate(users), users)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (epoch + 1) % trainer.eval_every:
            continue
        generator.eval()
        value = validate()
        report(task, total=trainer.epochs, val=value)
        if stopper.improved(value):
            save_checkpoint(best_path, {"generator": generator.state_dict(), "epoch": epoch})
        if stopper.step(value, epoch, generator):
            break
    stopper.restore(generator)
    generator.eval()
    return stopper
