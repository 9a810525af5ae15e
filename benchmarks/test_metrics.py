"""Full-ranking metrics throughput: NDCG/Precision/Recall/Hit@20 on 10k users x 10k items (CPU).

Compared in the same run with a peer that ranks by a full ``torch.sort`` of every row (the
obvious formulation; also the tie-breaking rule, as a stable descending sort).
"""

from __future__ import annotations

import math

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cdr.data.records import Interactions
from cdr.evaluation.ranking import evaluate_ranking
from cdr.metrics import ranking_metrics_per_user

NUM_USERS = NUM_ITEMS = 10_000


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor]:
    """Random scores with ~20 excluded (training) items and ~10 relevant items per user."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(NUM_USERS, NUM_ITEMS, generator=gen)  # [U, I]
    scores[torch.rand(NUM_USERS, NUM_ITEMS, generator=gen) < 0.002] = -math.inf
    relevance = (torch.rand(NUM_USERS, NUM_ITEMS, generator=gen) < 0.001).float()  # [U, I]
    return scores, relevance


def _full_sort_metrics(scores: torch.Tensor, relevance: torch.Tensor) -> dict[str, torch.Tensor]:
    """Peer: a full stable descending sort per batch of rows, top 20 taken from it."""
    parts = []
    for start in range(0, scores.shape[0], 1024):
        s, r = scores[start : start + 1024], relevance[start : start + 1024]
        order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :20]  # [B, 20]
        gains = r.gather(1, order).double() * (s.gather(1, order) > -math.inf)
        discount = 1 / torch.log2(torch.arange(2, 22, dtype=torch.float64))
        ideal = torch.topk(r.double(), 20, dim=1).values
        parts.append((gains * discount).sum(1) / (ideal * discount).sum(1))
    return {"ndcg@20": torch.cat(parts)}


def test_full_ranking_at_20_10k_users_x_10k_items(
    benchmark: BenchmarkFixture, problem: tuple[torch.Tensor, torch.Tensor]
) -> None:
    scores, relevance = problem
    out = benchmark.pedantic(
        ranking_metrics_per_user, args=(scores, relevance, (20,)), rounds=3, iterations=1
    )
    assert set(out) == {"ndcg@20", "precision@20", "recall@20", "hit@20"}
    assert out["ndcg@20"].shape == (NUM_USERS,)


def test_peer_full_sort_ndcg_at_20(
    benchmark: BenchmarkFixture, problem: tuple[torch.Tensor, torch.Tensor]
) -> None:
    scores, relevance = problem
    out = benchmark.pedantic(_full_sort_metrics, args=(scores, relevance), rounds=1, iterations=1)
    ours = ranking_metrics_per_user(scores, relevance, (20,))["ndcg@20"]
    torch.testing.assert_close(out["ndcg@20"], ours, equal_nan=True)


def _edges(gen: torch.Generator, count: int) -> Interactions:
    pairs = torch.randint(0, NUM_USERS * NUM_ITEMS, (count,), generator=gen)
    return Interactions(
        pairs // NUM_ITEMS, pairs % NUM_ITEMS, torch.ones(count), torch.zeros(count).long()
    )


def test_evaluate_ranking_dot_scores_10k_users_x_10k_items(benchmark: BenchmarkFixture) -> None:
    """End to end: dot-product scoring (D = 64), -inf masking of 200k training edges, dense
    relevance from 100k held-out edges, P/R/NDCG/Hit@20, one 1024-user batch at a time."""
    gen = torch.Generator().manual_seed(1)
    users, items = (
        torch.randn(NUM_USERS, 64, generator=gen),
        torch.randn(NUM_ITEMS, 64, generator=gen),
    )
    relevant, train = _edges(gen, 100_000), _edges(gen, 200_000)
    result = benchmark.pedantic(
        evaluate_ranking,
        args=(lambda u: users[u] @ items.T, torch.arange(NUM_USERS), NUM_ITEMS, relevant, train),
        rounds=2,
        iterations=1,
    )
    assert len(result) > 0.99 * NUM_USERS  # users without held-out edges are skipped
