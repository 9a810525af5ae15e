"""A backbone's traits decide the training objective and who scores: ``objective="own"``
drops BPR from the step, ``scoring="own"`` routes ranking and rating through the backbone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from cdr.backbones.base import BackboneBase
from cdr.errors import CompositionError
from cdr.interfaces import BackboneTraits, Graph
from cdr.pipelines.backbone_model import DomainData, InductiveModel, training_loss
from cdr.scorers.dot import DotScorer

USERS = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # [U=3, D=2]
ITEMS = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [-1.0, 1.0]])  # [I=4, D=2]
EDGES = torch.tensor([[0, 1, 2], [0, 1, 2]])


class Fixed(BackboneBase):
    """Fixed representations; a constant regularisation 0.25 with a gradient."""

    def __init__(self, traits: BackboneTraits) -> None:
        super().__init__()
        self.traits = traits
        self.users = nn.Parameter(USERS.clone())
        self.items = nn.Parameter(ITEMS.clone())

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        return self.users, self.items

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        return 0.25 + 0.0 * self.users.sum()


class NegatedDot(Fixed):
    """Scores itself: the negated dot product (reverses the dot scorer's ranking)."""

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        return -(users @ items.T)

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        return -(users * items).sum(1)


def data_for() -> dict[str, DomainData]:
    graph = Graph(EDGES, num_users=3, num_items=4)  # the step reads only ``train``
    return {"target": DomainData(None, None, graph, graph)}  # type: ignore[arg-type]


def bpr_reference(users: list[int], pos: list[int], neg: list[int]) -> float:
    """-mean ln sigma(<u, i> - <u, j>) in float64, by hand."""
    total = 0.0
    for u, i, j in zip(users, pos, neg, strict=True):
        x = float(USERS[u].double() @ ITEMS[i].double() - USERS[u].double() @ ITEMS[j].double())
        total += -math.log(1.0 / (1.0 + math.exp(-x)))
    return total / len(users)


@pytest.mark.parametrize("objective", ["bpr", "own"])
def test_own_objective_drops_bpr_from_the_step(objective: str) -> None:
    model = InductiveModel({"target": Fixed(BackboneTraits(objective=objective))}, None)  # type: ignore[dict-item]
    users, pos, neg = [0, 1, 2], [0, 1, 2], [3, 0, 1]
    batch = {"target": (torch.tensor(users), torch.tensor(pos), torch.tensor(neg))}
    total, parts = training_loss(model, data_for(), batch, None)
    expected = 0.25 + (bpr_reference(users, pos, neg) if objective == "bpr" else 0.0)
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    assert parts["target_reg"] == pytest.approx(0.25)


def test_own_scoring_routes_ranking_and_rating_through_the_backbone() -> None:
    dot = DotScorer()
    plain = InductiveModel({"target": Fixed(BackboneTraits())}, None)  # type: ignore[dict-item]
    assert plain.scorer_for("target", dot) is dot
    own = InductiveModel({"target": NegatedDot(BackboneTraits(scoring="own"))}, None)  # type: ignore[dict-item]
    scorer = own.scorer_for("target", dot)
    torch.testing.assert_close(scorer.score(USERS, ITEMS), -(USERS @ ITEMS.T))
    torch.testing.assert_close(scorer.rate(USERS, ITEMS[:3]), -(USERS * ITEMS[:3]).sum(1))


def test_own_scoring_without_a_score_method_is_a_named_error() -> None:
    model = InductiveModel({"target": Fixed(BackboneTraits(scoring="own"))}, None)  # type: ignore[dict-item]
    with pytest.raises(CompositionError, match=r"traits\.scoring is 'own' but it has no score"):
        model.scorer_for("target", DotScorer())


def test_traits_refuse_unknown_objective_and_scoring() -> None:
    with pytest.raises(ValueError):
        BackboneTraits(objective="bce")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BackboneTraits(scoring="mlp")  # type: ignore[arg-type]
