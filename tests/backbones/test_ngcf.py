"""NGCF: one bi-interaction layer and the whole representation against a dense float64
recomputation of eqs. 8-9, the width split, unseen nodes, the L2 term, and learning on
planted data through the inductive protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from backbone_learning import planted_run
from torch import Tensor

from cdr.backbones.adjacency import normalized_adjacency
from cdr.backbones.ngcf import NGCFBackbone, NGCFConfig, layer_widths
from cdr.errors import ConfigError
from cdr.interfaces import Graph

EDGES = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 4], [0, 1, 1, 2, 0, 2, 3, 3]])
GRAPH = Graph(EDGES, num_users=6, num_items=5)  # user 5 and item 4 have no edge


def dense_laplacian(edges: Tensor, num_users: int, num_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` [N, N] in float64, entry by entry from the edge list."""
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in edges.T.tolist():
        a[u, num_users + i] = a[num_users + i, u] = 1.0
    degree = a.sum(1)
    lap = torch.zeros_like(a)
    for r in range(n):
        for c in range(n):
            if a[r, c]:
                lap[r, c] = 1.0 / (degree[r] * degree[c]).sqrt()
    return lap


def dense_layer(lap: Tensor, e: Tensor, layer: torch.nn.Module) -> Tensor:
    """eq. 8 before the activation, float64: ``(L + I) E W1 + b1 + (L E ⊙ E) W2 + b2``."""
    w1, b1 = layer.w1.weight.double(), layer.w1.bias.double()
    w2, b2 = layer.w2.weight.double(), layer.w2.bias.double()
    eye = torch.eye(lap.shape[0], dtype=torch.float64)
    return (lap + eye) @ e @ w1.T + b1 + ((lap @ e) * e) @ w2.T + b2


def test_one_layer_matches_a_dense_float64_recomputation() -> None:
    model = NGCFBackbone(6, 5, 12, NGCFConfig(num_layers=2), seed=1)
    layer = model.layers[0]
    with torch.no_grad():  # non-zero biases, so a dropped bias term shows
        layer.w1.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(2))
        layer.w2.bias.uniform_(-1, 1, generator=torch.Generator().manual_seed(3))
    e = torch.randn(11, 4, generator=torch.Generator().manual_seed(4))
    adjacency = normalized_adjacency(EDGES, 6, 5)
    got = layer(adjacency, e)
    expected = dense_layer(dense_laplacian(EDGES, 6, 5), e.double(), layer)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_representation_is_the_concatenation_of_normalised_layers() -> None:
    model = NGCFBackbone(6, 5, 12, NGCFConfig(num_layers=2, negative_slope=0.3), seed=0)
    model.prepare(GRAPH)
    model.eval()
    with torch.no_grad():
        users, items = model.represent(GRAPH)
        # dense float64 eqs. 8-9; unseen user 5 / item 4 start from the seen rows' mean
        seen_u = model.user_emb[:5].double()
        seen_i = model.item_emb[:4].double()
        e = torch.cat([seen_u, seen_u.mean(0, keepdim=True), seen_i, seen_i.mean(0, keepdim=True)])
        lap = dense_laplacian(EDGES, 6, 5)
        parts = [e]
        for layer in model.layers:
            e = torch.nn.functional.leaky_relu(dense_layer(lap, e, layer), 0.3)
            e = e / e.norm(dim=1, keepdim=True)
            parts.append(e)
        expected = torch.cat(parts, dim=1)
    assert users.shape == (6, 12) and items.shape == (5, 12)
    torch.testing.assert_close(torch.cat([users, items]).double(), expected, rtol=1e-5, atol=1e-5)


def test_widths_split_the_run_dim_and_too_small_a_dim_is_a_named_error() -> None:
    assert layer_widths(256, 3) == (64, 64, 64, 64)  # the paper's 64 x (1 + 3)
    assert layer_widths(66, 3) == (18, 16, 16, 16)
    assert sum(layer_widths(37, 4)) == 37
    with pytest.raises(ConfigError, match=r"backbone\.num_layers: .* trainer\.dim = 3"):
        layer_widths(3, 3)


def test_message_dropout_only_in_training() -> None:
    model = NGCFBackbone(6, 5, 12, NGCFConfig(num_layers=2, message_dropout=0.5), seed=0)
    model.prepare(GRAPH)
    torch.manual_seed(0)
    a, _ = model.represent(GRAPH)
    b, _ = model.represent(GRAPH)
    assert not torch.equal(a, b)  # two dropout masks
    model.eval()
    c, _ = model.represent(GRAPH)
    d, _ = model.represent(GRAPH)
    assert torch.equal(c, d)


def test_regularization_is_l2_of_the_batch_layer0_embeddings() -> None:
    model = NGCFBackbone(6, 5, 12, NGCFConfig(reg_weight=3.0), seed=0)
    users, items = torch.tensor([0, 2, 2]), torch.tensor([[1, 3], [0, 2], [4, 4]])
    user_emb, item_emb = model.user_emb.detach().double(), model.item_emb.detach().double()
    expected = 0.0
    for u, row in zip(users.tolist(), items.tolist(), strict=True):
        expected += float(user_emb[u].pow(2).sum())
        expected += sum(float(item_emb[i].pow(2).sum()) for i in row)
    got = model.regularization(GRAPH, users, items)
    assert float(got.detach()) == pytest.approx(3.0 * expected / (2 * 3), rel=1e-6)


def test_learns_planted_tastes_better_than_popularity(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path / "run", "ngcf", ["trainer.epochs=12", "trainer.patience=12"])
    assert metrics["best_epoch"] >= 3  # validation kept improving after the first epochs
    for domain in ("source", "target"):
        assert metrics[f"{domain}/ndcg@20"] > 1.25 * metrics[f"ref/popularity/{domain}/ndcg@20"]
