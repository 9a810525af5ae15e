from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from metrics.ranking_reference import reference_metrics

from cdr.metrics import (
    hit_rate_at_k,
    ndcg_at_k,
    ndcg_at_k_per_user,
    precision_at_k,
    ranking_metrics_per_user,
    recall_at_k,
    recall_at_k_per_user,
    top_k_items,
)

INF = math.inf


def test_hand_computed_graded_case_with_exclusion_and_ties() -> None:
    # user 0 ranks items as [1, 2, 4, 0, 3]: 1, 2, 4 tie at 0.5 (lower index first),
    # item 3 is excluded (-inf) and comes last.
    scores = torch.tensor([[0.1, 0.5, 0.5, -INF, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    relevance = torch.tensor([[0.0, 0.0, 3.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    m = ranking_metrics_per_user(scores, relevance, (2, 3, 5))
    dcg2 = 3 / math.log2(3)
    idcg2 = 3 + 2 / math.log2(3)
    assert m["ndcg@2"][0].item() == pytest.approx(dcg2 / idcg2)
    dcg3 = dcg2 + 2 / math.log2(4)
    idcg3 = idcg2 + 1 / math.log2(4)
    assert m["ndcg@3"][0].item() == pytest.approx(dcg3 / idcg3)
    assert m["precision@2"][0].item() == pytest.approx(1 / 2)
    assert m["recall@3"][0].item() == pytest.approx(2 / 3)  # item 3 is relevant but excluded
    assert m["recall@5"][0].item() == pytest.approx(2 / 3)  # -inf never counts as a hit
    assert m["hit@2"][0].item() == 1.0
    for values in m.values():  # user 1 has no relevant item
        assert math.isnan(values[1].item())
    # means skip user 1 rather than count it as zero
    assert ndcg_at_k(scores, relevance, 2) == pytest.approx(dcg2 / idcg2)
    assert precision_at_k(scores, relevance, 2) == pytest.approx(0.5)
    assert recall_at_k(scores, relevance, 3) == pytest.approx(2 / 3)
    assert hit_rate_at_k(scores, relevance, 1) == 0.0


def test_hand_computed_binary_precision_counts_k_beyond_catalogue() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.5]])
    relevance = torch.tensor([[1.0, 1.0, 0.0]])
    m = ranking_metrics_per_user(scores, relevance, (1, 10))
    assert m["precision@1"].item() == 1.0
    assert m["precision@10"].item() == pytest.approx(2 / 10)
    assert m["recall@10"].item() == 1.0
    assert m["ndcg@1"].item() == 1.0
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"].item() == pytest.approx(expected)


def test_ties_are_broken_by_lower_item_index() -> None:
    scores = torch.zeros(2, 8)
    scores[1, 6] = 1.0
    assert top_k_items(scores, 3).tolist() == [[0, 1, 2], [6, 0, 1]]
    # ties straddling the cut and inside the top-k
    scores = torch.tensor([[2.0, 1.0, 3.0, 1.0, 3.0, 1.0]])
    assert top_k_items(scores, 4).tolist() == [[2, 4, 0, 1]]
    assert top_k_items(scores, 10).tolist() == [[2, 4, 0, 1, 3, 5]]


def test_nan_scores_and_negative_relevance_are_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k_items(torch.tensor([[0.0, math.nan]]), 1)
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k(torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), 1)
    with pytest.raises(ValueError, match="num_users, num_items"):
        ndcg_at_k(torch.zeros(1, 2), torch.zeros(1, 3), 1)


def test_no_relevant_user_at_all_gives_nan() -> None:
    assert math.isnan(ndcg_at_k(torch.randn(3, 4), torch.zeros(3, 4), 2))


def test_large_batch_uses_topk_path_and_matches_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(300, 500, generator=gen)
    scores[scores < -2] = -INF
    relevance = (torch.rand(300, 500, generator=gen) < 0.02).float() * torch.randint(
        1, 6, (300, 500), generator=gen
    )
    m = ranking_metrics_per_user(scores, relevance, (20,), batch_size=64)
    ref = reference_metrics(scores.numpy(), relevance.numpy(), 20)
    for name in ("ndcg", "precision", "recall", "hit"):
        np.testing.assert_allclose(m[f"{name}@20"].numpy(), ref[name], rtol=1e-9, atol=1e-12)


# Scores from a small pool so that ties (and -inf exclusions) are frequent.
_score = st.sampled_from([-INF, -1.0, 0.0, 0.25, 0.5, 1.0, 2.0])


@st.composite
def _problem(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    users = draw(st.integers(1, 6))
    items = draw(st.integers(1, 12))
    scores = draw(arrays(np.float32, (users, items), elements=_score))
    relevance = draw(arrays(np.float32, (users, items), elements=st.sampled_from([0, 0, 1, 3, 5])))
    k = draw(st.integers(1, items + 3))
    return scores, relevance, k


@settings(max_examples=150, deadline=None)
@given(_problem(), st.integers(1, 7))
def test_matches_independent_reference(
    problem: tuple[np.ndarray, np.ndarray, int], batch: int
) -> None:
    scores, relevance, k = problem
    m = ranking_metrics_per_user(
        torch.from_numpy(scores), torch.from_numpy(relevance), (k,), batch_size=batch
    )
    ref = reference_metrics(scores, relevance, k)
    for name in ("ndcg", "precision", "recall", "hit"):
        np.testing.assert_allclose(m[f"{name}@{k}"].numpy(), ref[name], rtol=1e-9, atol=1e-12)
        finite = m[f"{name}@{k}"][~torch.isnan(m[f"{name}@{k}"])]
        assert bool(((finite >= 0) & (finite <= 1 + 1e-12)).all())


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(2, 15), st.integers(1, 20), st.randoms(use_true_random=False))
def test_permutation_invariance_over_items(users: int, items: int, k: int, rnd: object) -> None:
    seed = rnd.randint(0, 2**31)  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(seed)
    scores = torch.rand(users, items, generator=gen, dtype=torch.float64)  # distinct a.s.
    relevance = torch.randint(0, 3, (users, items), generator=gen).float()
    perm = torch.randperm(items, generator=gen)
    a = ranking_metrics_per_user(scores, relevance, (k,))
    b = ranking_metrics_per_user(scores[:, perm], relevance[:, perm], (k,))
    for key in a:
        torch.testing.assert_close(a[key], b[key], equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(_problem())
def test_users_without_relevant_items_do_not_change_the_mean(
    problem: tuple[np.ndarray, np.ndarray, int],
) -> None:
    scores, relevance, k = problem
    s, r = torch.from_numpy(scores), torch.from_numpy(relevance)
    extra_s = torch.cat([s, torch.randn(2, s.shape[1])])
    extra_r = torch.cat([r, torch.zeros(2, s.shape[1])])
    per_user = recall_at_k_per_user(extra_s, extra_r, k)
    assert bool(torch.isnan(per_user[-2:]).all())
    for fn in (ndcg_at_k, precision_at_k, recall_at_k, hit_rate_at_k):
        before, after = fn(s, r, k), fn(extra_s, extra_r, k)
        assert (math.isnan(before) and math.isnan(after)) or before == pytest.approx(after)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 12), st.integers(1, 15), st.randoms(use_true_random=False))
def test_ideal_ranking_has_ndcg_one(users: int, items: int, k: int, rnd: object) -> None:
    seed = rnd.randint(0, 2**31)  # type: ignore[attr-defined]
    gen = torch.Generator().manual_seed(seed)
    relevance = torch.randint(0, 4, (users, items), generator=gen).float()
    values = ndcg_at_k_per_user(relevance.clone(), relevance, k)  # scores = relevance
    finite = values[~torch.isnan(values)]
    torch.testing.assert_close(finite, torch.ones_like(finite))
