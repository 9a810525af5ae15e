"""Joint training of one graph backbone per domain (+ aligner): the loop shared by the
inductive (MICRec) pipeline and the composed pipeline.

Each step samples ``trainer.batch_size`` BPR triples per domain and ``batch_users``
overlapping anchor users for the aligner, with full propagation of both graphs (MICRec
section 4.3). Early stopping on the mean validation NDCG@k over domains; every evaluated
epoch writes ``last.pt`` (resumable) and the best epoch ``best.pt``, atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import torch

from cdr.config.experiment import ExperimentConfig
from cdr.interfaces import Scorer
from cdr.pipelines.inductive import (
    DomainData,
    InductiveModel,
    overlapping_train_users,
    training_loss,
    validate,
)
from cdr.pipelines.inductive_sampling import BPRSampler
from cdr.progress import Reporter
from cdr.runs import load_checkpoint, save_checkpoint
from cdr.training.early_stopping import EarlyStopping

LAST = "last.pt"
BEST = "best.pt"


def train_backbones(
    cfg: ExperimentConfig,
    model: InductiveModel,
    scorer: Scorer,
    data: dict[str, DomainData],
    num_users: int,
    ckpt_dir: Path,
    report: Reporter,
    *,
    task: str = "train epoch",
) -> EarlyStopping:
    """Train ``model`` in place on ``data[*].split.train``; restore its best epoch.

    Resumes from ``ckpt_dir/last.pt`` when present. Returns the stopper (best value/epoch).
    """
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    samplers = {
        name: BPRSampler(d.split.train, d.domain.num_items, gen) for name, d in data.items()
    }
    anchors_pool = overlapping_train_users(data, num_users)
    batch_users = int(getattr(model.aligner_fn, "batch_users", 64))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay
    )
    stopper = EarlyStopping(cfg.trainer.patience, mode="max")
    start = 0
    if (ckpt_dir / LAST).exists():  # resume an interrupted run
        state = load_checkpoint(ckpt_dir / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        stopper.best, stopper.best_epoch = state["best"], state["best_epoch"]
        stopper.bad_epochs, stopper.best_state = state["bad_epochs"], state["best_state"]
        start = state["epoch"] + 1
    steps = math.ceil(max(len(s) for s in samplers.values()) / cfg.trainer.batch_size)
    k = cfg.evaluation.k
    report(task, advance=start, total=cfg.trainer.epochs)
    model.train()
    for epoch in range(start, cfg.trainer.epochs):
        model.set_epoch(epoch)
        totals: dict[str, float] = {}
        for _ in range(steps):
            batches = {
                name: tuple(t.to(device) for t in s.sample(cfg.trainer.batch_size))
                for name, s in samplers.items()
            }
            anchors = None
            if anchors_pool.numel() >= 2 and model.aligner_fn is not None:
                pick = torch.randperm(anchors_pool.numel(), generator=gen)[:batch_users]
                anchors = anchors_pool[pick].to(device)
            loss, parts = training_loss(model, data, cast(Any, batches), anchors)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value / steps
        if (epoch + 1) % cfg.trainer.eval_every and epoch + 1 != cfg.trainer.epochs:
            report(task, 1, None, **totals)
            continue
        val = validate(model, data, scorer, k, cfg.evaluation.batch_size)
        value = sum(val.values()) / len(val)
        stop = stopper.step(value, epoch, model)
        if stopper.best_epoch == epoch:
            save_checkpoint(ckpt_dir / BEST, {"model": model.state_dict(), "epoch": epoch})
        save_checkpoint(
            ckpt_dir / LAST,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch,
                "best": stopper.best,
                "best_epoch": stopper.best_epoch,
                "bad_epochs": stopper.bad_epochs,
                "best_state": stopper.best_state,
            },
        )
        report(task, 1, None, **totals, **{f"val_ndcg@{k}_{n}": v for n, v in val.items()})
        if stop:
            break
    stopper.restore(model)
    model.set_epoch(max(stopper.best_epoch, 0))
    model.eval()
    return stopper
