"""The single-domain protocol: one graph backbone on the target domain alone, no transfer.

The common ground with single-domain libraries (RecBole's general recommenders): every
user's target interactions are split by ``split.ratios`` into train / validation / test
(no unseen users or items; the per-user cut of the inductive split with both unseen
fractions 0); the backbone trains on the training edges, early-stops on validation NDCG@k
with the training edges masked, and is tested once by full ranking with the training and
validation edges masked. Registered as ``single-domain`` (``split.kind = "single-domain"``,
a graph backbone, no generator); the masked edge sets are written to ``protocol.json``.
"""

from __future__ import annotations

import attrs
import torch

from cdr.config.experiment import SplitConfig
from cdr.data.records import CrossDomainDataset, Interactions
from cdr.data.splits import DomainInductiveSplit, inductive_split
from cdr.evaluation.ranking import evaluate_ranking
from cdr.evaluation.references import PREFIX, popularity
from cdr.interfaces import Graph
from cdr.pipelines.backbone_model import DomainData, InductiveModel, score_fn
from cdr.pipelines.context import WRITE, RunContext, RunState, require
from cdr.pipelines.inductive import train_graphs
from cdr.protocols import ProtocolSpec, StageSpec


def single_domain_split(dataset: CrossDomainDataset, cfg: SplitConfig) -> DomainInductiveSplit:
    """The target domain's per-user train / validation / test edges (``cfg.ratios``)."""
    whole = attrs.evolve(cfg, unseen_user_fraction=0.0, unseen_item_fraction=0.0)
    return inductive_split(dataset, whole).target


def backbone(ctx: RunContext, state: RunState) -> RunState:
    split: DomainInductiveSplit = state.split
    domain = ctx.dataset.target
    graph = Graph(split.train.edge_index, ctx.dataset.num_users, domain.num_items)
    data = {"target": DomainData(domain, split, graph, graph)}
    return train_graphs(ctx, state, data, "train epoch")


def test(ctx: RunContext, state: RunState) -> RunState:
    """Full ranking of the test edges, training and validation edges masked."""
    split: DomainInductiveSplit = state.split
    model: InductiveModel = require(state.model, "model", "test")
    scorer = require(state.scorer, "scorer", "test")
    ev = ctx.cfg.evaluation
    model.eval()
    with torch.no_grad():
        users, items = model.represent({"target": state.graphs["target"].train})["target"]
        result = evaluate_ranking(
            score_fn(model.scorer_for("target", scorer), users, items),
            torch.unique(split.test.user),
            ctx.dataset.target.num_items,
            split.test,
            Interactions.concat([split.train, split.val]),
            ks=tuple(sorted(set(ev.ks) | {ev.k})),
            batch_size=ev.batch_size,
        )
    metrics = {f"target/{name}": value for name, value in result.summary().items()}
    return state.with_metrics(metrics, per_user={**state.per_user, "target/all": result})


def references(ctx: RunContext, state: RunState) -> RunState:
    """Popularity (training edges) on the same test edges with the same masks."""
    split: DomainInductiveSplit = state.split
    ev, num_items = ctx.cfg.evaluation, ctx.dataset.target.num_items
    counts = popularity(split.train, num_items)
    result = evaluate_ranking(
        lambda batch: counts.expand(batch.numel(), num_items),
        torch.unique(split.test.user),
        num_items,
        split.test,
        Interactions.concat([split.train, split.val]),
        ks=tuple(sorted(set(ev.ks) | {ev.k})),
        batch_size=ev.batch_size,
    )
    metrics = {f"{PREFIX}/popularity/target/{k}": v for k, v in result.summary().items()}
    return state.with_metrics(metrics)


protocol = ProtocolSpec(
    name="single-domain",
    split_kind="single-domain",
    split=single_domain_split,
    generator="no",
    backbone="yes",
    stages=(
        StageSpec("backbone", backbone, needs=("split",), gives=("graphs", "model", "scorer")),
        StageSpec("test", test, needs=("model", "scorer", "graphs")),
        StageSpec("references", references),
        WRITE,
    ),
    summary="one backbone on the target domain alone; train and validation masked at test",
    masked_at_validation=("train",),
    masked_at_test=("train", "validation"),
)
