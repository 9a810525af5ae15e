from __future__ import annotations

import math

import pytest
import torch

from cdr.data.records import Interactions
from cdr.evaluation.ranking import RankingResult, evaluate_ranking
from cdr.metrics import ranking_metrics_per_user


def _inter(users: list[int], items: list[int], ratings: list[float] | None = None) -> Interactions:
    n = len(users)
    rating = torch.tensor(ratings if ratings is not None else [1.0] * n, dtype=torch.float32)
    return Interactions(
        torch.tensor(users, dtype=torch.long),
        torch.tensor(items, dtype=torch.long),
        rating,
        torch.zeros(n, dtype=torch.long),
    )


def _random_case(seed: int) -> tuple[torch.Tensor, Interactions, Interactions]:
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items = 40, 25
    table = torch.randn(num_users, num_items, generator=gen)  # [U, I]
    pairs = torch.randperm(num_users * num_items, generator=gen)[:300]
    users, items = pairs // num_items, pairs % num_items
    ratings = torch.randint(1, 6, (300,), generator=gen).float()
    relevant = Interactions(users[:100], items[:100], ratings[:100], torch.zeros(100).long())
    exclude = Interactions(users[100:], items[100:], ratings[100:], torch.zeros(200).long())
    return table, relevant, exclude


@pytest.mark.parametrize("graded", [False, True])
def test_matches_dense_metrics(graded: bool) -> None:
    table, relevant, exclude = _random_case(0)
    evaluated = torch.tensor([5, 3, 3, 17, 0, 39, 22, 8, 11])  # unsorted, with a duplicate
    calls: list[int] = []

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        calls.append(users.numel())
        return table[users]

    result = evaluate_ranking(
        score_fn, evaluated, 25, relevant, exclude, ks=(3, 10), graded=graded, batch_size=2
    )
    assert max(calls) <= 2
    # dense reference: the evaluated users with a relevant item, excluded scores at -inf
    scores = table.clone()
    scores[exclude.user, exclude.item] = -math.inf
    relevance = torch.zeros_like(table)
    relevance[relevant.user, relevant.item] = relevant.rating if graded else 1.0
    kept = torch.tensor(sorted({int(u) for u in evaluated if relevance[u].sum() > 0}))
    assert result.users.tolist() == kept.tolist()
    expected = ranking_metrics_per_user(scores[kept], relevance[kept], (3, 10))
    assert set(result.per_user) == set(expected)
    for key, values in expected.items():
        torch.testing.assert_close(result.per_user[key], values)
    summary = result.summary()
    assert summary["ndcg@10"] == pytest.approx(float(expected["ndcg@10"].mean()))


def test_exclusion_masks_training_items() -> None:
    table = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    relevant = _inter([0], [2])
    without = evaluate_ranking(lambda u: table[u], torch.tensor([0]), 4, relevant, ks=(1,))
    assert without.summary()["hit@1"] == 0.0
    exclude = _inter([0, 0], [0, 1])
    masked = evaluate_ranking(lambda u: table[u], torch.tensor([0]), 4, relevant, exclude, ks=(1,))
    assert masked.summary() == {"ndcg@1": 1.0, "precision@1": 1.0, "recall@1": 1.0, "hit@1": 1.0}


def test_score_fn_output_is_not_mutated_and_shape_is_checked() -> None:
    table = torch.zeros(2, 3)
    relevant = _inter([0, 1], [0, 1])
    evaluate_ranking(lambda u: table[u], torch.arange(2), 3, relevant, _inter([0], [2]))
    assert bool((table == 0).all())
    with pytest.raises(ValueError, match="expected"):
        evaluate_ranking(lambda u: table[u][:, :2], torch.arange(2), 3, relevant)


def test_no_users_with_relevant_items_gives_empty_result() -> None:
    result = evaluate_ranking(
        lambda u: torch.zeros(u.numel(), 3), torch.arange(2), 3, _inter([], [])
    )
    assert len(result) == 0
    assert math.isnan(result.summary()["ndcg@20"])


def test_ranking_result_checks_lengths_and_selects() -> None:
    with pytest.raises(ValueError, match="per_user"):
        RankingResult(torch.arange(3), {"ndcg@20": torch.zeros(2)})
    result = RankingResult(torch.arange(3), {"m": torch.tensor([0.0, 1.0, 2.0])})
    picked = result.select(torch.tensor([True, False, True]))
    assert picked.users.tolist() == [0, 2]
    assert picked.summary() == {"m": 1.0}
