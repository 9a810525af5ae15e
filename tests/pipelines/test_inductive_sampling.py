"""Vectorised BPR sampling."""

from __future__ import annotations

import torch

from cdr.data.records import Interactions
from cdr.pipelines.inductive_sampling import BPRSampler


def inter(users: list[int], items: list[int]) -> Interactions:
    n = len(users)
    return Interactions(
        torch.tensor(users), torch.tensor(items), torch.ones(n), torch.zeros(n, dtype=torch.long)
    )


def test_negatives_avoid_positives_and_stay_in_pool() -> None:
    # user 0 interacted with items 0-4 of 0-9: 30 redraw rounds leave a clash w.p. 2^-30
    train = inter([0] * 5 + [1] * 5, [*range(5), *range(5, 10)])
    sampler = BPRSampler(train, 10, torch.Generator().manual_seed(0), resample_rounds=30)
    users, pos, neg = sampler.sample(500)
    assert bool(sampler.is_positive(users, pos).all())
    assert not bool(sampler.is_positive(users, neg).any())
    assert bool((neg[users == 0] >= 5).all())
    assert bool(torch.isin(neg, sampler.pool).all())


def test_epoch_covers_every_edge_once_and_is_seeded() -> None:
    train = inter([0, 0, 1, 2, 2, 3], [0, 1, 2, 3, 4, 0])
    a = BPRSampler(train, 6, torch.Generator().manual_seed(5)).epoch(4)
    b = BPRSampler(train, 6, torch.Generator().manual_seed(5)).epoch(4)
    assert [len(x[0]) for x in a] == [4, 2]
    users, items = torch.cat([x[0] for x in a]).tolist(), torch.cat([x[1] for x in a]).tolist()
    seen = sorted(zip(users, items, strict=True))
    assert seen == sorted(zip(train.user.tolist(), train.item.tolist(), strict=True))
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
