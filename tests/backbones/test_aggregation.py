"""Modality-based aggregation (MICRec eqs. 3-4): similarity, blocked top-K, aggregation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.backbones.aggregation import (
    ModalityFeatures,
    aggregate,
    mean_of_items,
    neighbourhoods,
    similarity_features,
    top_k_neighbours,
)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.0, 1.0))
def test_similarity_is_weighted_cosine(seed: int, w: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    t, v = torch.randn(5, 4, generator=gen), torch.randn(5, 3, generator=gen)
    f = similarity_features(t, v, w)
    expected = w * F.cosine_similarity(t[:, None], t[None], dim=2) + (1 - w) * (
        F.cosine_similarity(v[:, None], v[None], dim=2)
    )
    torch.testing.assert_close(f @ f.T, expected, atol=1e-5, rtol=1e-5)


def test_missing_modality_leaves_the_other_with_weight_one() -> None:
    t = torch.randn(4, 3)
    f = similarity_features(t, None, 0.9)
    torch.testing.assert_close(f @ f.T, F.cosine_similarity(t[:, None], t[None], dim=2))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 30), st.integers(1, 4), st.integers(1, 7), st.integers(0, 2**16))
def test_blocked_top_k_equals_dense_top_k(n: int, k: int, block: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(n, 3, generator=gen), dim=1)
    candidates = torch.rand(n, generator=gen) > 0.3
    got, k_eff = top_k_neighbours(feats, candidates, k, block_size=block)
    sim = feats @ feats.T
    sim[:, ~candidates] = -torch.inf
    sim.fill_diagonal_(-torch.inf)
    assert k_eff == max(0, min(k, int(candidates.sum()) - 1))
    if k_eff:
        ref = sim.topk(k_eff, dim=1).values
        torch.testing.assert_close(sim.gather(1, got), ref)
        assert bool(candidates[got].all())
        assert not bool((got == torch.arange(n)[:, None]).any())


def test_aggregate_adds_mean_of_neighbours() -> None:
    x = torch.tensor([[1.0], [2.0], [4.0]])
    nbrs = torch.tensor([[1, 2], [0, 2], [0, 1]])
    out = aggregate(x, nbrs, torch.tensor([True, True, False]))
    torch.testing.assert_close(out, torch.tensor([[4.0], [4.5], [4.0]]))


def test_user_features_are_means_of_their_items() -> None:
    items = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    edges = torch.tensor([[0, 0, 2], [0, 1, 2]])
    torch.testing.assert_close(
        mean_of_items(items, edges, 3), torch.tensor([[0.5, 1.0], [0.0, 0.0], [4.0, 4.0]])
    )


def test_neighbourhoods_skip_users_without_edges() -> None:
    mods = ModalityFeatures(torch.eye(4), None)
    edges = torch.tensor([[0, 1, 2], [0, 0, 1]])
    hoods = neighbourhoods(mods, edges, num_users=4, num_items=4, k=3, w=0.9)
    assert hoods.user_receives.tolist() == [True, True, True, False]
    assert hoods.users.shape == (4, 2)  # 3 candidate users -> at most 2 other neighbours
    assert hoods.items.shape == (4, 1)  # 2 items with edges -> 1 neighbour
