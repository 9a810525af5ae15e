"""The trainable model of the graph-backbone pipelines and what its training needs: one
backbone per domain plus the aligner, the joint loss of a step (MICRec section 4.3),
validation NDCG on the training graph. Shared by the inductive and composed pipelines and
by ``backbone_training``; imports no pipeline.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.errors import CompositionError
from cdr.interfaces import Aligner, Graph, GraphBackbone, Scorer, ScoringBackbone

DOMAINS = ("source", "target")


@attrs.frozen(eq=False)
class DomainData:
    """One domain's graphs: ``train`` (E_tr) for training/validation, ``full`` (E_tr + E_new)
    for the test."""

    domain: Domain
    split: DomainInductiveSplit
    train: Graph
    full: Graph


def domain_data(dataset: CrossDomainDataset, name: str, split: DomainInductiveSplit) -> DomainData:
    domain: Domain = getattr(dataset, name)
    full = Interactions.concat([split.train, split.new])
    return DomainData(
        domain,
        split,
        Graph(split.train.edge_index, dataset.num_users, domain.num_items),
        Graph(full.edge_index, dataset.num_users, domain.num_items),
    )


def bpr_loss(users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """``-mean ln sigma(s(u, i) - s(u, i'))`` for representations [B, D] (BPR, eq. 5)."""
    return -F.logsigmoid((users * pos).sum(1) - (users * neg).sum(1)).mean()


def overlapping_train_users(data: dict[str, DomainData], num_users: int) -> Tensor:
    """[n] users with training edges in both domains (the aligner's anchors)."""
    both = torch.ones(num_users, dtype=torch.bool)
    for d in data.values():
        seen = torch.zeros(num_users, dtype=torch.bool)
        seen[d.split.train.user] = True
        both &= seen
    return torch.nonzero(both).flatten()


class InductiveModel(nn.Module):
    """The trainable parts: a backbone per domain and the aligner (None: no aligner).

    An aligner is an ``nn.Module`` (a parameter-free one simply has no parameters), so it
    is checkpointed with the backbones."""

    def __init__(self, backbones: dict[str, GraphBackbone], aligner: Aligner | None) -> None:
        super().__init__()
        self.backbones = nn.ModuleDict(cast(dict[str, nn.Module], backbones))
        self.aligner = cast(nn.Module | None, aligner)

    @property
    def aligner_fn(self) -> Aligner | None:
        return cast("Aligner | None", self.aligner)

    def backbone(self, name: str) -> GraphBackbone:
        return cast(GraphBackbone, self.backbones[name])

    def set_epoch(self, epoch: int) -> None:
        """The backbones' per-epoch hook (INMO's alpha; a no-op for plain backbones)."""
        for name in self.backbones:
            self.backbone(name).set_epoch(epoch)

    def represent(self, graphs: dict[str, Graph]) -> dict[str, tuple[Tensor, Tensor]]:
        return {name: self.backbone(name).represent(g) for name, g in graphs.items()}

    def scorer_for(self, name: str, scorer: Scorer) -> Scorer:
        """The scorer ranking domain ``name``: ``scorer``, or the backbone itself when its
        traits say it scores (``scoring="own"``)."""
        backbone = self.backbone(name)
        if backbone.traits.scoring == "own":
            if not isinstance(backbone, ScoringBackbone):
                raise CompositionError(
                    f"backbone of {name}: traits.scoring is 'own' but it has no score()"
                )
            return BackboneScorer(backbone)
        return scorer


@attrs.frozen(eq=False)
class BackboneScorer:
    """A ``Scorer`` over a backbone's own ``score`` (its ranking score is also its rating)."""

    backbone: ScoringBackbone

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return self.backbone.score(users, items)  # [B, I]

    def rate(self, users: Tensor, items: Tensor) -> Tensor:
        return self.backbone.score_pairs(users, items)  # [B]


def training_loss(
    model: InductiveModel,
    data: dict[str, DomainData],
    batches: dict[str, tuple[Tensor, Tensor, Tensor]],
    anchors: Tensor | None,
) -> tuple[Tensor, dict[str, float]]:
    """The joint loss of one step and its parts (for reporting)."""
    reps = model.represent({name: d.train for name, d in data.items()})
    total = torch.zeros((), device=next(model.parameters()).device)
    parts: dict[str, float] = {}
    for name, (users, pos, neg) in batches.items():
        u_rep, i_rep = reps[name]
        backbone = model.backbone(name)
        bpr = (
            bpr_loss(u_rep[users], i_rep[pos], i_rep[neg])
            if backbone.traits.objective == "bpr"
            else total.new_zeros(())
        )
        items = torch.stack([pos, neg], dim=1)  # [B, 2]
        reg = backbone.regularization(data[name].train, users, items)
        total = total + bpr + reg
        parts[f"{name}_bpr"], parts[f"{name}_reg"] = float(bpr.detach()), float(reg.detach())
    if model.aligner_fn is not None and anchors is not None and anchors.numel() >= 2:
        cl = model.aligner_fn.loss(reps["source"][0][anchors], reps["target"][0][anchors])
        total = total + cl
        parts["cl"] = float(cl.detach())
    return total, parts


def score_fn(scorer: Scorer, users_rep: Tensor, items_rep: Tensor) -> Any:
    def score(users: Tensor) -> Tensor:
        return scorer.score(users_rep[users.to(users_rep.device)], items_rep)

    return score


@torch.no_grad()
def validate(
    model: InductiveModel, data: dict[str, DomainData], scorer: Scorer, k: int, batch_size: int
) -> dict[str, float]:
    """Validation NDCG@k per domain, on the training graph: the seen-user x seen-item
    validation edges (``split.validation``), training edges masked."""
    from cdr.evaluation.ranking import evaluate_ranking

    model.eval()
    reps = model.represent({name: d.train for name, d in data.items()})
    out = {}
    for name, d in data.items():
        u_rep, i_rep = reps[name]
        val = d.split.validation
        result = evaluate_ranking(
            score_fn(model.scorer_for(name, scorer), u_rep, i_rep),
            torch.unique(val.user),
            d.domain.num_items,
            val,
            exclude=d.split.train,
            ks=(k,),
            batch_size=batch_size,
        )
        out[name] = result.summary().get(f"ndcg@{k}", 0.0) if len(result) else 0.0
    model.train()
    return out
