"""Cold-start evaluation: which items are ranked (the candidate mask) and what is read off
the space (the scorer), against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from cdr.data.records import Interactions
from cdr.pipelines.coldstart_eval import evaluate_cold_users
from cdr.scorers.calibrated import CalibratedScorer
from cdr.scorers.dot import DotScorer

# 2 cold users, 4 items in 1-D: scores are user * item
USERS = torch.tensor([3, 5])
VECTORS = torch.tensor([[1.0], [1.0]])
ITEMS = torch.tensor([[4.0], [3.0], [2.0], [1.0]])


def _relevant(pairs: list[tuple[int, int, float]]) -> Interactions:
    u, i, r = zip(*pairs, strict=True)
    return Interactions(
        torch.tensor(u), torch.tensor(i), torch.tensor(r), torch.zeros(len(u), dtype=torch.long)
    )


def test_items_outside_the_candidates_are_never_ranked() -> None:
    # item 0 scores highest for everyone but is not a candidate (an unseen item)
    relevant = _relevant([(3, 1, 5.0), (5, 2, 4.0)])
    candidates = torch.tensor([False, True, True, True])
    metrics, per_user = evaluate_cold_users(
        DotScorer(), VECTORS, USERS, ITEMS, relevant, candidates, ks=(1,), k=1, batch_size=8
    )
    # user 3: candidates ranked 1, 2, 3 -> its relevant item 1 is first: hit@1 = 1;
    # user 5: its relevant item 2 is second -> hit@1 = 0. With item 0 ranked, both miss.
    assert metrics["hit@1"] == pytest.approx(0.5)
    assert per_user["ranking"].per_user["hit@1"].tolist() == [1.0, 0.0]


def test_ratings_and_rankings_are_read_through_the_scorer() -> None:
    relevant = _relevant([(3, 0, 9.0), (3, 3, 3.0), (5, 1, 7.0)])
    everything = torch.ones(4, dtype=torch.bool)
    scorer = CalibratedScorer(DotScorer(), 2.0, 1.0)  # rating = 2 * u.v + 1
    metrics, _ = evaluate_cold_users(
        scorer, VECTORS, USERS, ITEMS, relevant, everything, ks=(2,), k=2, batch_size=8
    )
    # predictions 9, 3, 7: exact
    assert metrics["mae"] == pytest.approx(0.0) and metrics["rmse"] == pytest.approx(0.0)
    plain, _ = evaluate_cold_users(
        DotScorer(), VECTORS, USERS, ITEMS, relevant, everything, ks=(2,), k=2, batch_size=8
    )
    # dot predictions 4, 1, 3 against 9, 3, 7: errors 5, 2, 4
    assert plain["mae"] == pytest.approx(11 / 3)
    assert plain["rmse"] == pytest.approx(math.sqrt((25 + 4 + 16) / 3))
