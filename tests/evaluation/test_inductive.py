from __future__ import annotations

import math

import pytest
import torch

from cdr.data.records import Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.evaluation.inductive import TAIL, evaluate_inductive, slice_name, tail_items
from cdr.metrics import ranking_metrics_per_user

NUM_USERS, NUM_ITEMS = 30, 20


def _edges(pairs: torch.Tensor) -> Interactions:
    """Interactions from flat ids ``user * NUM_ITEMS + item`` [E]."""
    n = pairs.numel()
    return Interactions(
        pairs // NUM_ITEMS, pairs % NUM_ITEMS, torch.ones(n), torch.zeros(n, dtype=torch.long)
    )


def _split(seed: int) -> DomainInductiveSplit:
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(NUM_USERS * NUM_ITEMS, generator=gen)[:260]
    unseen_users = torch.tensor([1, 4, 9, 16, 25])
    unseen_items = torch.tensor([0, 7, 13, 19])
    train_pairs = pairs[:140]
    touches = torch.isin(train_pairs // NUM_ITEMS, unseen_users) | torch.isin(
        train_pairs % NUM_ITEMS, unseen_items
    )
    return DomainInductiveSplit(
        unseen_users=unseen_users,
        unseen_items=unseen_items,
        train=_edges(train_pairs[~touches]),
        val=_edges(pairs[140:170]),
        test=_edges(pairs[170:]),
        new=_edges(train_pairs[touches]),
    )


def test_slices_match_dense_reference() -> None:
    split = _split(0)
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(NUM_USERS, NUM_ITEMS, generator=gen)  # [U, I]
    results = evaluate_inductive(
        lambda u: table[u], split, NUM_USERS, NUM_ITEMS, ks=(5, 10), batch_size=7
    )
    assert set(results) == {
        slice_name(u, i) for u in ("all", "seen", "unseen") for i in ("all", "seen", "unseen")
    } | {TAIL}

    scores = table.clone()
    for part in (split.train, split.new, split.val):  # train, E_new and validation masked
        scores[part.user, part.item] = -math.inf
    unseen_item = torch.zeros(NUM_ITEMS, dtype=torch.bool)
    unseen_item[split.unseen_items] = True
    unseen_user = torch.zeros(NUM_USERS, dtype=torch.bool)
    unseen_user[split.unseen_users] = True
    tail = torch.zeros(NUM_ITEMS, dtype=torch.bool)
    tail[tail_items(split, NUM_ITEMS)] = True
    item_masks = {
        "all": torch.ones(NUM_ITEMS, dtype=torch.bool),
        "seen": ~unseen_item,
        "unseen": unseen_item,
    }
    user_masks = {
        "all": torch.ones(NUM_USERS, dtype=torch.bool),
        "seen": ~unseen_user,
        "unseen": unseen_user,
    }
    cases = [
        (slice_name(u, i), user_masks[u], item_masks[i]) for u in user_masks for i in item_masks
    ] + [(TAIL, user_masks["all"], tail)]
    for name, umask, imask in cases:
        relevance = torch.zeros(NUM_USERS, NUM_ITEMS)
        relevance[split.test.user, split.test.item] = 1.0
        relevance[:, ~imask] = 0.0
        relevance[~umask] = 0.0
        expected = ranking_metrics_per_user(scores, relevance, (5, 10))
        kept = torch.nonzero(~torch.isnan(expected["ndcg@5"])).flatten()
        got = results[name]
        assert got.users.tolist() == kept.tolist(), name
        assert len(got) > 0, name
        for key, values in expected.items():
            torch.testing.assert_close(got.per_user[key], values[kept], msg=name)


def test_validation_edges_and_curve_cut_offs() -> None:
    split = _split(2)
    table = torch.randn(NUM_USERS, NUM_ITEMS, generator=torch.Generator().manual_seed(3))
    results = evaluate_inductive(
        lambda u: table[u], split, NUM_USERS, NUM_ITEMS, ks=range(5, 101, 5), on="val"
    )
    everyone = results[slice_name("all", "all")]
    # selection ranks only the seen-user x seen-item validation edges
    seen = ~torch.isin(split.val.user, split.unseen_users) & ~torch.isin(
        split.val.item, split.unseen_items
    )
    assert seen.any() and not seen.all()  # the fixture has both kinds
    assert everyone.users.tolist() == torch.unique(split.val.user[seen]).tolist()
    assert "ndcg@100" in everyone.per_user
    # beyond the catalogue every relevant (non-excluded) item is retrieved: NDCG stops moving
    torch.testing.assert_close(everyone.per_user["ndcg@20"], everyone.per_user["ndcg@100"])


def test_tail_items_by_frequency_with_index_ties() -> None:
    split = _split(0)
    observed = torch.cat([split.train.item, split.new.item])
    counts = torch.bincount(observed, minlength=NUM_ITEMS)
    tail = tail_items(split, NUM_ITEMS, 0.25)
    assert tail.numel() == 5
    outside = torch.ones(NUM_ITEMS, dtype=torch.bool)
    outside[tail] = False
    assert counts[tail].max() <= counts[outside].min()
    # all counts equal: the lowest indices form the tail
    flat = DomainInductiveSplit(
        torch.empty(0, dtype=torch.long),
        torch.empty(0, dtype=torch.long),
        Interactions.empty(),
        Interactions.empty(),
        Interactions.empty(),
        Interactions.empty(),
    )
    assert tail_items(flat, 8, 0.25).tolist() == [0, 1]
    train_only = tail_items(split, NUM_ITEMS, 0.25, by="train")
    assert set(split.unseen_items.tolist()) <= set(train_only.tolist())
    with pytest.raises(ValueError, match="fraction"):
        tail_items(split, NUM_ITEMS, 0.0)
