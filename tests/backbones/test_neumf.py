"""NeuMF: eq. 12 scoring and the eq. 7 loss against a float64 reference built from the
paper's formulas pair by pair, the extra negatives, unseen nodes, and learning on planted
data through the shared training step."""

from __future__ import annotations

import math

import pytest
import torch
from backbones.planted import (
    model_ndcg20,
    one_thread,
    planted_clusters,
    popularity_ndcg20,
    train_steps,
)
from torch import Tensor

from cdr.backbones.neumf import NeuMFBackbone, NeuMFConfig, draw_negatives, tower_widths
from cdr.errors import ConfigError
from cdr.interfaces import Graph

EDGES = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 4], [0, 1, 1, 2, 0, 2, 3, 3]])
GRAPH = Graph(EDGES, num_users=6, num_items=5)  # user 5 and item 4 have no training edge


def randomised(config: NeuMFConfig, dim: int = 10, block: int = 2**24) -> NeuMFBackbone:
    """A NeuMF with every parameter redrawn N(0, 1) (the paper's init makes scores ~0)."""
    model = NeuMFBackbone(6, 5, dim, config, seed=0, block=block)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    model.prepare(GRAPH)
    return model


def reference_logit(model: NeuMFBackbone, u: Tensor, i: Tensor) -> float:
    """eq. 12 before the sigmoid for one pair, float64, from the paper's formulas: GMF
    p ⊙ q (eq. 8), the tower on the concatenation [p; q] (eq. 10), h^T [.; .] + b."""
    g = model.gmf_dim
    p, q = u.double(), i.double()
    gmf = p[:g] * q[:g]
    x = torch.cat([p[g:], q[g:]])
    for layer in model.linears:
        x = torch.relu(layer.weight.double() @ x + layer.bias.double())
    out = model.predict.weight.double()[0] @ torch.cat([gmf, x]) + model.predict.bias.double()
    return float(out.detach())


@pytest.mark.parametrize("block", [2**24, 7])  # one block, and blocks of one user
def test_score_matches_eq_12_pair_by_pair(block: int) -> None:
    model = randomised(NeuMFConfig(mlp_layers=2), block=block)
    model.eval()
    with torch.no_grad():
        users, items = model.represent(GRAPH)
        scores = model.score(users[:4], items)  # [4, 5]
        pairs = model.score_pairs(users[:4], items[[4, 0, 3, 1]])  # [4]
    expected = torch.tensor(
        [[reference_logit(model, users[u], items[i]) for i in range(5)] for u in range(4)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairs.double(), expected[[0, 1, 2, 3], [4, 0, 3, 1]])


def test_loss_is_the_mean_binary_cross_entropy_of_eq_7() -> None:
    model = randomised(NeuMFConfig(mlp_layers=3, num_negatives=1), dim=12)
    users, items = torch.tensor([0, 2, 3]), torch.tensor([[1, 3], [0, 2], [2, 4]])
    loss = model.regularization(GRAPH, users, items)
    total = 0.0
    for u, (pos, neg) in zip(users.tolist(), items.tolist(), strict=True):
        s_pos = reference_logit(model, model.user_emb[u], model.item_emb[pos])
        s_neg = reference_logit(model, model.user_emb[u], model.item_emb[neg])
        total -= math.log(1 / (1 + math.exp(-s_pos))) + math.log(1 - 1 / (1 + math.exp(-s_neg)))
    assert float(loss.detach()) == pytest.approx(total / 6, rel=1e-5)
    loss.backward()
    assert model.user_emb.grad is not None and float(model.user_emb.grad[0].abs().sum()) > 0


def test_extra_negatives_are_unobserved_seen_items_replayed_from_the_step() -> None:
    users = torch.arange(50) % 4
    keys = torch.unique(EDGES[0] * 5 + EDGES[1])
    pool = torch.tensor([0, 1, 2, 3])
    neg = draw_negatives(users, pool, keys, 5, 3, torch.Generator().manual_seed(0))
    assert neg.shape == (50, 3)
    assert bool(torch.isin(neg, pool).all())
    assert not bool(torch.isin(users[:, None] * 5 + neg, keys).any())  # never a positive
    # four negatives per positive: the step seeds them, so a fresh model replays step 0
    batch_users, batch_items = torch.tensor([0, 2]), torch.tensor([[1, 3], [0, 2]])
    first = randomised(NeuMFConfig(num_negatives=4))
    loss_0 = first.regularization(GRAPH, batch_users, batch_items)
    loss_1 = first.regularization(GRAPH, batch_users, batch_items)  # step 1: new draws
    again = randomised(NeuMFConfig(num_negatives=4))
    assert int(first.step) == 2 and "step" in first.state_dict()
    assert float(again.regularization(GRAPH, batch_users, batch_items).detach()) == float(
        loss_0.detach()
    )
    assert float(loss_1.detach()) != float(loss_0.detach())


def test_unseen_users_and_items_get_the_mean_embedding_at_inference() -> None:
    model = randomised(NeuMFConfig())
    model.eval()
    users, items = model.represent(Graph(torch.cat([EDGES, torch.tensor([[5], [4]])], 1), 6, 5))
    torch.testing.assert_close(users[5], model.user_emb[:5].mean(0))
    torch.testing.assert_close(items[4], model.item_emb[:4].mean(0))
    torch.testing.assert_close(users[:5], model.user_emb[:5])
    model.train()  # in training the tables are returned as they are
    assert torch.equal(model.represent(GRAPH)[0], model.user_emb)


def test_widths_follow_the_tower_pattern_and_refuse_a_narrow_dim() -> None:
    assert tower_widths(64, 3) == (32, 32, (32, 16, 8))  # the authors' 64 -> 32 -> 16 -> 8
    with pytest.raises(ConfigError, match=r"backbone\.mlp_layers.*trainer\.dim = 8"):
        tower_widths(8, 4)


def test_learns_planted_clusters_and_beats_popularity() -> None:
    data = planted_clusters()
    model = NeuMFBackbone(data.num_users, data.num_items, 16, seed=0)
    with one_thread():
        losses = train_steps(model, data, steps=150)
    assert losses[-1] < 0.5 * losses[0]
    ours, popular = model_ndcg20(model, data), popularity_ndcg20(data)
    assert ours > popular + 0.2, (ours, popular)
