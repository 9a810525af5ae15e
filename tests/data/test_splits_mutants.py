"""Tests that kill surviving mutants of cdr.data.splits (docs/testing.md).

A split is part of a run's protocol (protocol.json, exported split files), so which random
stream draws what is a contract: each draw is restated here from its documented seed
derivation (``derive_seed(seed, protocol, label)`` into PCG64) and compared; and every
user's edge counts per part follow the documented rounding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cdr.config import SplitConfig
from cdr.data.records import CrossDomainDataset
from cdr.data.splits import (
    InductiveSplit,
    cold_start_split,
    inductive_split,
    load_split,
    save_split,
)
from cdr.errors import DataError, SplitError
from cdr.seeding import derive_seed


def _draw(ids: torch.Tensor, fraction: float, seed: int, *labels: str) -> tuple[list, list]:
    perm = np.random.Generator(np.random.PCG64(derive_seed(seed, *labels))).permutation(len(ids))
    k = round(fraction * len(ids))
    values = ids.tolist()
    return sorted(values[i] for i in perm[:k]), sorted(values[i] for i in perm[k:])


def test_cold_start_draws_come_from_their_named_streams(
    tiny_synthetic: CrossDomainDataset,
) -> None:
    cfg = SplitConfig(beta=0.3, val_fraction=0.25, unseen_item_fraction=0.2, seed=11)
    split = cold_start_split(tiny_synthetic, cfg)
    test, rest = _draw(tiny_synthetic.overlapping_users(), 0.3, 11, "cold-start", "test")
    val, train = _draw(torch.tensor(rest), 0.25, 11, "cold-start", "val")
    items, _ = _draw(torch.arange(tiny_synthetic.target.num_items), 0.2, 11, "cold-start", "items")
    assert split.test_users.tolist() == test
    assert split.val_users.tolist() == val and split.train_users.tolist() == train
    assert split.unseen_items.tolist() == items
    no_items = cold_start_split(tiny_synthetic, SplitConfig(beta=0.3, unseen_item_fraction=0.0))
    assert no_items.unseen_items.numel() == 0


def test_inductive_draws_come_from_their_named_streams(
    tiny_synthetic: CrossDomainDataset,
) -> None:
    cfg = SplitConfig(kind="inductive", unseen_user_fraction=0.2, unseen_item_fraction=0.2, seed=5)
    split = inductive_split(tiny_synthetic, cfg)
    users, _ = _draw(torch.arange(tiny_synthetic.num_users), 0.2, 5, "inductive", "users")
    for role, domain, part in (
        ("source", tiny_synthetic.source, split.source),
        ("target", tiny_synthetic.target, split.target),
    ):
        items, _ = _draw(torch.arange(domain.num_items), 0.2, 5, "inductive", role)
        assert part.unseen_items.tolist() == items, role
        assert set(part.unseen_users.tolist()) <= set(users)
        # the edges' stream: the per-user shuffle keys come from (inductive, role, edges)
        key = np.random.Generator(
            np.random.PCG64(derive_seed(5, "inductive", role, "edges"))
        ).random(len(domain.interactions))
        order = np.lexsort((key, domain.interactions.user.numpy()))
        first = {}
        for e in order.tolist():  # each user's first shuffled edge is a training-part edge
            first.setdefault(int(domain.interactions.user[e]), e)
        train_like = torch.cat(
            [
                part.train.user * domain.num_items + part.train.item,
                part.new.user * domain.num_items + part.new.item,
            ]
        ).tolist()
        for user, e in first.items():
            pair = user * domain.num_items + int(domain.interactions.item[e])
            assert pair in train_like, (role, user)


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.6, 0.0, 0.4)])
def test_per_user_edge_counts_follow_the_rounding(
    tiny_synthetic: CrossDomainDataset, ratios: tuple[float, float, float]
) -> None:
    """Per user with n edges: b1 = max(1, floor(r0 n + 1/2)) train(+new), b2 - b1 val with
    b2 = max(b1, floor((r0 + r1) n + 1/2)), the rest test."""
    cfg = SplitConfig(
        kind="inductive", unseen_user_fraction=0.0, unseen_item_fraction=0.0, ratios=ratios
    )
    part = inductive_split(tiny_synthetic, cfg).target
    inter = tiny_synthetic.target.interactions
    n = torch.bincount(inter.user, minlength=tiny_synthetic.num_users)
    counts = {
        name: torch.bincount(edges.user, minlength=tiny_synthetic.num_users)
        for name, edges in (("train", part.train), ("val", part.val), ("test", part.test))
    }
    assert len(part.new) == 0
    for user in torch.nonzero(n).flatten().tolist():
        total = int(n[user])
        b1 = max(1, int(np.floor(ratios[0] * total + 0.5)))
        b2 = max(b1, int(np.floor((ratios[0] + ratios[1]) * total + 0.5)))
        got = (int(counts["train"][user]), int(counts["val"][user]), int(counts["test"][user]))
        assert got == (b1, b2 - b1, total - b2), (user, total)


def test_ratio_checks() -> None:
    from cdr.data.splits import _check_ratios

    _check_ratios((1.0, 0.0, 0.0))  # zero val and test ratios are allowed
    _check_ratios((0.5, 0.5 - 5e-7, 0.0))  # within the 1e-6 tolerance
    for bad in ((0.5, 0.5), (0.5, 0.6, -0.1), (0.5, 0.3, 0.1), (0.5, 0.5, 2e-6)):
        with pytest.raises(SplitError, match="must be 3 non-negative numbers summing to 1"):
            _check_ratios(bad)  # type: ignore[arg-type]
    with pytest.raises(SplitError, match="a train ratio of 0 leaves nothing to train on"):
        _check_ratios((0.0, 0.5, 0.5))
    _check_ratios((0.5, 0.0, 0.5))


def test_one_test_user_and_one_seen_item_are_enough(tiny_synthetic: CrossDomainDataset) -> None:
    n = tiny_synthetic.overlapping_users().numel()
    items = tiny_synthetic.target.num_items
    cfg = SplitConfig(beta=1.0 / n, val_fraction=0.0, unseen_item_fraction=(items - 1) / items)
    split = cold_start_split(tiny_synthetic, cfg)
    assert split.test_users.numel() == 1
    assert split.unseen_items.numel() == items - 1


def test_one_seen_user_is_enough_and_none_is_refused(tiny_synthetic: CrossDomainDataset) -> None:
    """The seen-user check refuses exactly zero seen users, with its own message."""
    n = tiny_synthetic.num_users
    overlap = set(tiny_synthetic.overlapping_users().tolist())
    fraction = (n - 1) / n  # round(fraction * n) = n - 1 unseen users: one seen user
    seed = next(
        s
        for s in range(50)
        if _draw(torch.arange(n), fraction, s, "inductive", "users")[1][0] in overlap
    )
    (seen,) = _draw(torch.arange(n), fraction, seed, "inductive", "users")[1]
    cfg = SplitConfig(
        kind="inductive", unseen_user_fraction=fraction, unseen_item_fraction=0.0, seed=seed
    )
    split = inductive_split(tiny_synthetic, cfg)
    for domain, part in (
        (tiny_synthetic.source, split.source),
        (tiny_synthetic.target, split.target),
    ):
        assert set(part.train.user.tolist()) == {seen}
        assert seen not in part.unseen_users.tolist()
        assert len(part.unseen_users) == len(domain.users()) - 1
    with pytest.raises(SplitError, match=r"unseen_user_fraction: 0\.999 leaves no training users"):
        inductive_split(tiny_synthetic, SplitConfig(kind="inductive", unseen_user_fraction=0.999))


def test_inductive_round_trip_keeps_every_tensor(
    tmp_path: Path, tiny_synthetic: CrossDomainDataset
) -> None:
    cfg = SplitConfig(kind="inductive", unseen_user_fraction=0.2, unseen_item_fraction=0.2)
    split = inductive_split(tiny_synthetic, cfg)
    save_split(split, tmp_path / "i")
    back = load_split(tmp_path / "i")
    assert isinstance(back, InductiveSplit)
    for role in ("source", "target"):
        ours, theirs = getattr(split, role), getattr(back, role)
        assert ours.unseen_users.numel() > 0 and ours.unseen_items.numel() > 0
        assert torch.equal(theirs.unseen_users, ours.unseen_users), role
        assert torch.equal(theirs.unseen_items, ours.unseen_items), role
        for name in ("train", "val", "test", "new"):
            for field in ("user", "item", "rating", "timestamp"):
                got = getattr(getattr(theirs, name), field)
                assert torch.equal(got, getattr(getattr(ours, name), field)), (role, name, field)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {"other": "x"},
        {"format": "cdr-split-0 cold-start"},
        {"format": "cdr-split-1 bogus"},
        {"format": "cdr-split-1"},
        {"format": "cdr-split-1 cold-start extra"},
    ],
)
def test_load_split_refuses_other_formats_by_name(
    tmp_path: Path, tiny_synthetic: CrossDomainDataset, metadata: dict[str, str] | None
) -> None:
    """The tensors are a valid cold-start split; only the format metadata is wrong."""
    save_split(cold_start_split(tiny_synthetic, SplitConfig()), tmp_path / "ok")
    tensors = load_file(tmp_path / "ok")
    save_file(tensors, tmp_path / "bad", metadata=metadata)
    written = None if metadata is None else metadata.get("format")
    with pytest.raises(
        DataError,
        match=rf"bad: format {re.escape(repr(written))}, expected "
        r"'cdr-split-1'",
    ):
        load_split(tmp_path / "bad")
