"""LightGCN propagation against a dense reference; the fast autograd path against autograd."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.backbones.adjacency import AdjacencyCache, layer_mean, normalized_adjacency
from cdr.backbones.lightgcn import LightGCNBackbone, fill_unseen, propagate
from cdr.interfaces import Graph, GraphBackbone


def dense_reference(
    edge_index: torch.Tensor, users: torch.Tensor, items: torch.Tensor, layers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook LightGCN with a dense (U + I) x (U + I) matrix, float64."""
    nu, ni = len(users), len(items)
    r = torch.zeros(nu, ni, dtype=torch.float64)
    r[edge_index[0], edge_index[1]] = 1.0
    a = torch.zeros(nu + ni, nu + ni, dtype=torch.float64)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.clamp(min=1) ** -0.5, torch.zeros_like(deg))
    a_hat = d[:, None] * a * d[None, :]
    x = torch.cat([users, items]).double()
    layers_out = [x]
    for _ in range(layers):
        layers_out.append(a_hat @ layers_out[-1])
    mean = torch.stack(layers_out).mean(0)
    return mean[:nu], mean[nu:]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[torch.Tensor, int, int, int]:
    nu = draw(st.integers(1, 7))
    ni = draw(st.integers(1, 6))
    pairs = draw(st.lists(st.tuples(st.integers(0, nu - 1), st.integers(0, ni - 1)), max_size=25))
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T
    return edge_index, nu, ni, draw(st.integers(0, 4))


@settings(max_examples=40, deadline=None)
@given(graphs(), st.integers(0, 2**16))
def test_propagate_equals_dense_reference(graph: tuple, seed: int) -> None:
    edge_index, nu, ni, layers = graph
    gen = torch.Generator().manual_seed(seed)
    users, items = torch.randn(nu, 5, generator=gen), torch.randn(ni, 5, generator=gen)
    got_u, got_i = propagate(edge_index, users, items, layers, cache=AdjacencyCache())
    ref_u, ref_i = dense_reference(edge_index, users, items, layers)
    torch.testing.assert_close(got_u.double(), ref_u, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_i.double(), ref_i, rtol=1e-5, atol=1e-5)


def test_normalized_adjacency_is_symmetric_and_dedups() -> None:
    edge_index = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])  # (1, 1) twice
    dense = normalized_adjacency(edge_index, 2, 2).to_dense()
    torch.testing.assert_close(dense, dense.T)
    assert dense[1, 3].item() == pytest.approx(2**-0.5)  # deg(user 1) = 1, deg(item 1) = 2


@settings(max_examples=20, deadline=None)
@given(graphs(), st.integers(0, 2**16))
def test_custom_backward_matches_autograd_through_dense(graph: tuple, seed: int) -> None:
    edge_index, nu, ni, layers = graph
    gen = torch.Generator().manual_seed(seed)
    adj = normalized_adjacency(edge_index, nu, ni)
    x = torch.randn(nu + ni, 4, generator=gen, requires_grad=True)
    weights = torch.randn(nu + ni, 4, generator=gen)
    (layer_mean(adj, x, layers) * weights).sum().backward()
    assert x.grad is not None
    fast = x.grad.clone()
    x.grad = None
    dense, out, cur = adj.to_dense(), x, x
    for _ in range(layers):
        cur = dense @ cur
        out = out + cur
    ((out / (layers + 1)) * weights).sum().backward()
    torch.testing.assert_close(fast, x.grad, rtol=1e-5, atol=1e-6)


def test_adjacency_is_cached_per_edge_index_tensor() -> None:
    cache = AdjacencyCache()
    edge_index = torch.tensor([[0, 1], [1, 0]])
    first = cache.adjacency(edge_index, 2, 2)
    assert cache.adjacency(edge_index, 2, 2) is first
    assert cache.adjacency(edge_index.clone(), 2, 2) is not first
    edge_index[1, 0] = 1  # in-place change bumps the version: rebuilt
    assert cache.adjacency(edge_index, 2, 2) is not first


def test_unseen_nodes_get_the_mean_embedding() -> None:
    emb = torch.tensor([[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]])
    seen = torch.tensor([True, True, False])
    torch.testing.assert_close(fill_unseen(emb, seen)[2], torch.tensor([2.0, 1.0]))


def test_backbone_represents_unseen_user_from_new_edges() -> None:
    train = Graph(torch.tensor([[0, 1, 1], [0, 0, 1]]), num_users=3, num_items=2)
    model = LightGCNBackbone(3, 2, dim=4, num_layers=2, seed=1)
    assert isinstance(model, GraphBackbone)
    model.prepare(train)
    model.eval()
    full = Graph(torch.tensor([[0, 1, 1, 2], [0, 0, 1, 1]]), num_users=3, num_items=2)
    users, items = model.represent(full)
    assert users.shape == (3, 4) and items.shape == (2, 4)
    # user 2 starts from the mean of users 0 and 1 (isolated: only layer 0 of 3 is nonzero),
    # then takes its new edge into account
    mean = model.user_emb[:2].mean(0)
    users_no_edge, _ = model.represent(train)
    torch.testing.assert_close(users_no_edge[2], mean / 3)
    assert not torch.allclose(users[2], mean)
    empty = Graph(torch.zeros(2, 0, dtype=torch.long), 1, 1)
    assert model.regularization(empty, torch.tensor([0]), torch.tensor([0])).item() == 0.0
