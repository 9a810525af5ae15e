"""Tests that kill surviving mutants of cdr.metrics (docs/testing.md): the error messages,
empty inputs (no users, no items, k = 0), graded relevance below 1, and the dtypes."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cdr.metrics import mae, ranking_metrics_per_user, rmse, top_k_items
from cdr.metrics.ranking import mean_over_users, metrics_from_top_k


def test_error_messages_name_the_problem() -> None:
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"^scores must be \[num_users, num_items\], got \(3,\)$"):
        top_k_items(torch.zeros(3), 1)
    with pytest.raises(ValueError, match=r"^scores contain NaN$"):
        top_k_items(torch.tensor([[math.nan, 0.0]]), 1)
    top = top_k_items(scores, 2)
    with pytest.raises(ValueError, match=r"^relevance \(2, 2\) and scores \(2, 3\) differ$"):
        metrics_from_top_k(scores, top, torch.zeros(2, 2), (1,))
    for ks in ((), (0,), (2, 0)):
        message = re.escape(f"ks must be positive cut-offs, got {list(ks)}")
        with pytest.raises(ValueError, match=rf"^{message}$"):
            metrics_from_top_k(scores, top, scores, ks)
    with pytest.raises(ValueError, match=r"^relevance must be >= 0 \(0 = not relevant\)$"):
        metrics_from_top_k(scores, top, -torch.ones(2, 3), (1,))
    with pytest.raises(ValueError, match=r"^top_items holds 2 items, fewer than max\(ks\) = 3$"):
        metrics_from_top_k(scores, top, scores, (3,))
    with pytest.raises(
        ValueError,
        match=r"^scores and relevance must both be \[num_users, num_items\], got \(2, 3\) and "
        r"\(3, 2\)$",
    ):
        ranking_metrics_per_user(scores, torch.zeros(3, 2), (1,))
    with pytest.raises(ValueError, match=r"^batch_size must be > 0, got 0$"):
        ranking_metrics_per_user(scores, scores, (1,), batch_size=0)
    with pytest.raises(ValueError, match=r"^pred \(2,\) and target \(3,\) differ$"):
        mae(torch.zeros(2), torch.zeros(3))
    with pytest.raises(
        ValueError, match=r"^no interactions to evaluate \(pred and target are empty\)$"
    ):
        rmse(torch.zeros(0), torch.zeros(0))


def test_k_zero_and_no_items_give_empty_long_top_lists() -> None:
    for scores, k in ((torch.randn(3, 4), 0), (torch.zeros(3, 0), 5)):
        top = top_k_items(scores, k)
        assert top.shape == (3, 0) and top.dtype == torch.long


def test_no_items_every_user_is_skipped() -> None:
    out = ranking_metrics_per_user(torch.zeros(2, 0), torch.zeros(2, 0), (1, 5))
    assert sorted(out) == sorted(f"{m}@{k}" for m in ("ndcg", "precision", "recall", "hit")
                                 for k in (1, 5))
    for values in out.values():
        assert values.shape == (2,) and values.dtype == torch.float64
        assert bool(torch.isnan(values).all())


def test_no_users_gives_empty_float64_per_user_metrics() -> None:
    out = ranking_metrics_per_user(torch.zeros(0, 4), torch.zeros(0, 4), (2,))
    assert len(out) == 4
    for values in out.values():
        assert values.shape == (0,) and values.dtype == torch.float64
    assert math.isnan(mean_over_users(out["ndcg@2"]))


def test_graded_relevance_below_one_still_normalises_to_one() -> None:
    """IDCG < 1 (gains 0.5 and 0.25): a perfect ranking has NDCG exactly 1."""
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    relevance = torch.tensor([[0.5, 0.25, 0.0, 0.0]])
    out = ranking_metrics_per_user(scores, relevance, (1, 2, 4))
    for k in (1, 2, 4):
        assert float(out[f"ndcg@{k}"][0]) == pytest.approx(1.0, abs=1e-12)
    worst = ranking_metrics_per_user(-scores, relevance, (4,))
    ideal = 0.5 + 0.25 / math.log2(3)
    actual = 0.25 / math.log2(4) + 0.5 / math.log2(5)
    assert float(worst["ndcg@4"][0]) == pytest.approx(actual / ideal, abs=1e-12)


def test_metrics_are_float64_for_float32_inputs() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 9, generator=gen)
    relevance = (torch.rand(5, 9, generator=gen) < 0.4).float()
    relevance[:, 0] = 1.0
    out = ranking_metrics_per_user(scores, relevance, (3,))
    assert {v.dtype for v in out.values()} == {torch.float64}
