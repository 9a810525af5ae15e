"""The cold-start split's fractions at beta != 0.5 (where beta and 1 - beta differ)."""

from __future__ import annotations

import pytest
import torch

from cdr.config.experiment import SplitConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions, ItemContent
from cdr.data.splits import cold_start_split


def _domain(name: str, users: torch.Tensor, num_users: int, num_items: int) -> Domain:
    items = torch.arange(users.numel()) % num_items
    inter = Interactions(users, items, torch.ones(users.numel()), torch.arange(users.numel()))
    content = ItemContent(
        title=tuple(str(i) for i in range(num_items)),
        description=("",) * num_items,
        categories=((),) * num_items,
        image=(None,) * num_items,
    )
    return Domain(name, num_users, tuple(str(i) for i in range(num_items)), inter, content, None)


@pytest.mark.parametrize("beta", [0.2, 0.8])
def test_beta_of_the_overlapping_users_become_test_users(beta: float) -> None:
    # 100 overlapping users (0..99), 20 target-only side users (100..119)
    num_users = 120
    source = _domain("books", torch.arange(100).repeat(2), num_users, 10)
    target = _domain("movies", torch.arange(120).repeat(2), num_users, 10)
    dataset = CrossDomainDataset("d", tuple(map(str, range(num_users))), source, target)
    split = cold_start_split(dataset, SplitConfig(beta=beta, val_fraction=0.1))
    assert split.test_users.numel() == round(beta * 100)
    rest = 100 - round(beta * 100)
    assert split.val_users.numel() == round(0.1 * rest)
    assert split.train_users.numel() == rest - round(0.1 * rest)
    assert split.side_users.tolist() == list(range(100, 120))
    every = torch.cat([split.test_users, split.val_users, split.train_users]).sort().values
    assert every.tolist() == list(range(100))  # a partition of the overlapping users
