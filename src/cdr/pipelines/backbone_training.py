"""Joint training of one graph backbone per domain (+ aligner), shared by the inductive
(MICRec) pipeline and the composed pipeline.

Each step samples ``trainer.batch_size`` BPR triples per domain and ``batch_users``
overlapping anchor users for the aligner, with full propagation of both graphs (MICRec
section 4.3). Early stopping on the mean validation NDCG@k over domains. It runs through
the shared loop (``cdr.training.loop``) as the stage ``backbones``: checkpointed after
every evaluated epoch and resumed where a run was interrupted; the backbones' per-epoch
hook (INMO's template weight) is called at the start of every epoch. Under data-parallel
training each rank takes its rows of every domain's BPR triples while the aligner's anchors
stay whole on every rank (InfoNCE's in-batch negatives do not split).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from cdr.config.experiment import ExperimentConfig
from cdr.interfaces import Scorer
from cdr.pipelines.backbone_model import (
    DomainData,
    InductiveModel,
    overlapping_train_users,
    training_loss,
    validate,
)
from cdr.pipelines.inductive_sampling import BPRSampler
from cdr.progress import Reporter
from cdr.training.distributed import Sharded, World, split_rows
from cdr.training.loop import Budget, FitResult, Stage, fit

Batch = tuple[dict[str, tuple[Tensor, Tensor, Tensor]], Tensor | None]


def train_backbones(
    cfg: ExperimentConfig,
    model: InductiveModel,
    scorer: Scorer,
    data: dict[str, DomainData],
    num_users: int,
    checkpoints: Path | None,
    report: Reporter,
    *,
    task: str = "train epoch",
) -> FitResult:
    """Train ``model`` in place on ``data[*].split.train``; restore its best epoch."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    samplers = {
        name: BPRSampler(d.split.train, d.domain.num_items, gen) for name, d in data.items()
    }
    anchors_pool = overlapping_train_users(data, num_users)
    batch_users = model.aligner_fn.batch_users if model.aligner_fn is not None else 0
    one_pass = math.ceil(max(len(s) for s in samplers.values()) / cfg.trainer.batch_size)
    steps = cfg.trainer.steps_per_epoch or one_pass
    k = cfg.evaluation.k

    def batches(_: int) -> Iterator[Batch]:
        for _ in range(steps):
            triples = {
                name: cast(
                    tuple[Tensor, Tensor, Tensor],
                    tuple(t.to(device) for t in s.sample(cfg.trainer.batch_size)),
                )
                for name, s in samplers.items()
            }
            anchors = None
            if anchors_pool.numel() >= 2 and model.aligner_fn is not None:
                pick = torch.randperm(anchors_pool.numel(), generator=gen)[:batch_users]
                anchors = anchors_pool[pick].to(device)
            yield triples, anchors

    def loss(batch: Batch) -> tuple[Tensor, dict[str, float]]:
        return training_loss(model, data, cast(Any, batch[0]), batch[1])

    def shard(batch: Batch, world: World) -> Sharded[Batch]:
        triples, weight = split_rows(batch[0], world)
        return (triples, batch[1]), weight

    def val_ndcg() -> float:
        val = validate(model, data, scorer, k, cfg.evaluation.batch_size)
        return sum(val.values()) / len(val)

    stage: Stage[Batch] = Stage(
        name="backbones",
        module=model,
        optimizer=torch.optim.Adam(
            model.parameters(), lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay
        ),
        batches=batches,
        loss=loss,
        budget=Budget(cfg.trainer.epochs, cfg.trainer.eval_every, cfg.trainer.patience, "max"),
        validate=val_ndcg,
        generators={"sampler": gen},
        on_epoch=model.set_epoch,
        task=task,
        shard=shard,
    )
    result = fit(stage, checkpoints, report)
    model.set_epoch(max(result.best_epoch, 0))
    model.eval()
    return result
