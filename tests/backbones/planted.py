"""Planted cluster data for "the backbone learns" tests, trained through the shared step.

Users and items fall into ``clusters`` groups; a user interacts only with items of its own
group, so a model that learns the structure ranks a user's held-out items (own group) high,
while popularity (training counts, blind to groups) cannot. Item popularity is skewed within
each group so popularity is not trivially at chance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs
import torch
from torch import Tensor, nn

from cdr.data.records import Interactions
from cdr.evaluation.ranking import evaluate_ranking
from cdr.evaluation.references import popularity
from cdr.interfaces import Graph, GraphBackbone
from cdr.pipelines.backbone_model import DomainData, InductiveModel, training_loss
from cdr.pipelines.inductive_sampling import BPRSampler
from cdr.scorers.dot import DotScorer


@attrs.frozen(eq=False)
class Planted:
    """train / test / new (E_new of ``unseen_users``) interactions over U users, I items."""

    num_users: int
    num_items: int
    train: Interactions
    test: Interactions
    new: Interactions
    unseen_users: Tensor

    @property
    def train_graph(self) -> Graph:
        return Graph(self.train.edge_index, self.num_users, self.num_items)

    @property
    def full_graph(self) -> Graph:
        full = Interactions.concat([self.train, self.new])
        return Graph(full.edge_index, self.num_users, self.num_items)


def interactions(users: Tensor, items: Tensor) -> Interactions:
    n = users.numel()
    return Interactions(users, items, torch.ones(n), torch.zeros(n, dtype=torch.long))


def planted_clusters(
    num_users: int = 240,
    num_items: int = 120,
    clusters: int = 6,
    per_user: int = 12,
    held_out: int = 4,
    unseen_fraction: float = 0.0,
    seed: int = 0,
) -> Planted:
    """Each user draws ``per_user`` distinct items of its group (skewed weights); the last
    ``held_out`` are the test edges. With ``unseen_fraction`` > 0 that share of users has no
    training edge: their first ``per_user - held_out`` items are E_new (revealed at test)."""
    gen = torch.Generator().manual_seed(seed)
    group_items = num_items // clusters
    weights = 1.0 / torch.arange(1, group_items + 1).float() ** 0.7  # within-group skew
    picks = torch.multinomial(weights.expand(num_users, -1), per_user, generator=gen)
    group = torch.arange(num_users) % clusters  # [U]
    items = group[:, None] * group_items + picks  # [U, per_user]
    users = torch.arange(num_users)[:, None].expand_as(items)
    unseen = torch.rand(num_users, generator=gen) < unseen_fraction  # [U]
    known = items[:, : per_user - held_out], users[:, : per_user - held_out]
    held = items[:, per_user - held_out :], users[:, per_user - held_out :]
    seen_rows = ~unseen
    return Planted(
        num_users,
        num_items,
        interactions(known[1][seen_rows].flatten(), known[0][seen_rows].flatten()),
        interactions(held[1].flatten(), held[0].flatten()),
        interactions(known[1][unseen].flatten(), known[0][unseen].flatten()),
        torch.nonzero(unseen).flatten(),
    )


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside (small ops on a loaded 2-core machine are 20x slower
    with two OpenMP threads spinning at barriers); the previous count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_steps(
    backbone: GraphBackbone, data: Planted, steps: int, batch: int = 256, lr: float = 1e-2
) -> list[float]:
    """``steps`` Adam updates of the shared training step (``training_loss``) on one
    domain; the losses."""
    model = InductiveModel({"target": backbone}, None)
    graph = data.train_graph
    backbone.prepare(graph)
    domain = {"target": DomainData(None, None, graph, graph)}  # type: ignore[arg-type]
    sampler = BPRSampler(data.train, data.num_items, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        batch_triple = {"target": sampler.sample(batch)}
        loss, _ = training_loss(model, domain, batch_triple, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def ndcg20(score: Callable[[Tensor], Tensor], data: Planted, users: Tensor | None = None) -> float:
    """NDCG@20 of the test edges of ``users`` (default all), training and new edges masked."""
    seen = Interactions.concat([data.train, data.new])
    result = evaluate_ranking(
        score,
        torch.arange(data.num_users) if users is None else users,
        data.num_items,
        data.test,
        exclude=seen,
        ks=(20,),
    )
    return result.summary()["ndcg@20"]


def model_ndcg20(backbone: GraphBackbone, data: Planted, users: Tensor | None = None) -> float:
    """NDCG@20 of the trained backbone, represented on the training + new edges and scored
    by the pipeline's scorer for it (the dot scorer, or its own)."""
    assert isinstance(backbone, nn.Module)
    backbone.eval()
    scorer = InductiveModel({"target": backbone}, None).scorer_for("target", DotScorer())
    with torch.no_grad():
        u_rep, i_rep = backbone.represent(data.full_graph)
        return ndcg20(lambda b: scorer.score(u_rep[b], i_rep), data, users)


def popularity_ndcg20(data: Planted, users: Tensor | None = None) -> float:
    counts = popularity(data.train, data.num_items)  # [I]
    return ndcg20(lambda b: counts.expand(b.numel(), -1).clone(), data, users)
