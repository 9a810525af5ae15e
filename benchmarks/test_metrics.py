"""Full-ranking metrics throughput: NDCG/Precision/Recall/Hit@20 on 10k users x 10k items (CPU).

Compared in the same run, interleaved, with a peer that ranks by a full ``torch.sort`` of every
row (the obvious formulation; also the tie-breaking rule, as a stable descending sort).
``--quick``: 2,000 users x 10,000 items, the same ratio target.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from cdr.data.records import Interactions
from cdr.evaluation.ranking import evaluate_ranking
from cdr.metrics import ranking_metrics_per_user

NUM_USERS = NUM_ITEMS = 10_000
QUICK_USERS = 2_000
#: measured 11-16x (quick and full size); a 3x slowdown (3.7-5.3x) fails.
SPEEDUP_TARGET = 6.0


def _problem(num_users: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scores with ~20 excluded (training) items and ~10 relevant items per user."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(num_users, NUM_ITEMS, generator=gen)  # [U, I]
    scores[torch.rand(num_users, NUM_ITEMS, generator=gen) < 0.002] = -math.inf
    relevance = (torch.rand(num_users, NUM_ITEMS, generator=gen) < 0.001).float()  # [U, I]
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


@pytest.mark.quick
def test_full_ranking_at_20_vs_full_sort_peer(
    interleave: type, figures: Callable[..., None], quick: bool
) -> None:
    users = QUICK_USERS if quick else NUM_USERS
    scores, relevance = _problem(users)
    ours = ranking_metrics_per_user(scores, relevance, (20,))
    assert set(ours) == {"ndcg@20", "precision@20", "recall@20", "hit@20"}
    torch.testing.assert_close(
        _full_sort_metrics(scores, relevance)["ndcg@20"], ours["ndcg@20"], equal_nan=True
    )
    timing = interleave(
        lambda: ranking_metrics_per_user(scores, relevance, (20,)),
        lambda: _full_sort_metrics(scores, relevance),
        rounds=2 if quick else 3,
        warmup=0,
    )
    figures(
        "metrics/ranking_at_20_speedup_vs_full_sort",
        f"NDCG/P/R/Hit@20 of {users:,} users x {NUM_ITEMS:,} items: full-sort peer's CPU time "
        "/ ours (the peer computes NDCG only)",
        timing.speedup(),
        "x",
        target=SPEEDUP_TARGET,
        higher=True,
        peer="torch.sort of every row (stable, descending), top 20",
        ours_cpu_s=timing.median("a"),
        peer_cpu_s=timing.median("b"),
        speedup_wall=timing.speedup("wall"),
    )


def _edges(gen: torch.Generator, count: int) -> Interactions:
    pairs = torch.randint(0, NUM_USERS * NUM_ITEMS, (count,), generator=gen)
    return Interactions(
        pairs // NUM_ITEMS, pairs % NUM_ITEMS, torch.ones(count), torch.zeros(count).long()
    )


def test_evaluate_ranking_dot_scores_10k_users_x_10k_items(
    timer: Callable, figures: Callable[..., None]
) -> None:
    """End to end: dot-product scoring (D = 64), -inf masking of 200k training edges, dense
    relevance from 100k held-out edges, P/R/NDCG/Hit@20, one 1024-user batch at a time."""
    gen = torch.Generator().manual_seed(1)
    users, items = (
        torch.randn(NUM_USERS, 64, generator=gen),
        torch.randn(NUM_ITEMS, 64, generator=gen),
    )
    relevant, train = _edges(gen, 100_000), _edges(gen, 200_000)
    results = []

    def run() -> None:
        results.append(
            evaluate_ranking(
                lambda u: users[u] @ items.T, torch.arange(NUM_USERS), NUM_ITEMS, relevant, train
            )
        )

    runs = [timer(run) for _ in range(2)]
    assert len(results[-1]) > 0.99 * NUM_USERS  # users without held-out edges are skipped
    figures(
        "metrics/evaluate_ranking_10k_x_10k_cpu_s",
        "evaluate_ranking end to end, 10k users x 10k items (dot scores, 200k edges masked)",
        min(r[1] for r in runs),
        "CPU s",
        target=2.5,
        wall_s=min(r[0] for r in runs),
    )
