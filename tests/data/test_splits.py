from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.config import SplitConfig
from cdr.data.records import CrossDomainDataset, Interactions
from cdr.data.splits import (
    ColdStartSplit,
    InductiveSplit,
    cold_start_split,
    inductive_split,
    load_split,
    save_split,
)
from cdr.data.synthetic import SyntheticConfig, generate
from cdr.errors import DataError, SplitError


def _key(inter: Interactions, num_items: int) -> set[int]:
    return set((inter.user * num_items + inter.item).tolist())


def test_cold_start_partitions_the_overlapping_users(tiny_synthetic: CrossDomainDataset) -> None:
    split = cold_start_split(tiny_synthetic, SplitConfig(beta=0.5, val_fraction=0.2))
    overlap = set(tiny_synthetic.overlapping_users().tolist())
    parts = [set(p.tolist()) for p in (split.train_users, split.val_users, split.test_users)]
    assert set.union(*parts) == overlap and sum(map(len, parts)) == len(overlap)
    assert len(parts[2]) == round(0.5 * len(overlap))
    assert torch.equal(split.side_users, tiny_synthetic.side_users())
    assert split.unseen_items.numel() == 0
    for ids in (split.train_users, split.val_users, split.test_users):
        assert torch.equal(ids, ids.sort().values)


def test_dual_cold_start_holds_out_target_items(tiny_synthetic: CrossDomainDataset) -> None:
    split = cold_start_split(tiny_synthetic, SplitConfig(beta=0.5, unseen_item_fraction=0.25))
    assert split.unseen_items.numel() == round(0.25 * tiny_synthetic.target.num_items)
    users = split.test_users
    seen = split.target_interactions(tiny_synthetic, users, "seen")
    unseen = split.target_interactions(tiny_synthetic, users, "unseen")
    every = split.target_interactions(tiny_synthetic, users, "all")
    assert len(seen) + len(unseen) == len(every) > 0
    assert bool(torch.isin(unseen.item, split.unseen_items).all())
    assert not bool(torch.isin(seen.item, split.unseen_items).any())
    assert set(every.user.tolist()) <= set(users.tolist())


def test_same_seed_gives_byte_identical_split_files(tmp_path: Path) -> None:
    """Two independent generations + splits write the same bytes; another seed does not."""
    files = []
    for run, seed in enumerate((0, 0, 1)):
        ds = generate(SyntheticConfig(size="tiny", images=False))[0]
        for kind, make in (("cold", cold_start_split), ("ind", inductive_split)):
            path = tmp_path / f"{kind}-{run}.safetensors"
            save_split(make(ds, SplitConfig(seed=seed, unseen_item_fraction=0.2)), path)
            files.append(path.read_bytes())
    cold0, ind0, cold1, ind1, cold2, ind2 = files
    assert cold0 == cold1 and ind0 == ind1
    assert cold0 != cold2 and ind0 != ind2


def test_splits_round_trip(tmp_path: Path, tiny_synthetic: CrossDomainDataset) -> None:
    cold = cold_start_split(tiny_synthetic, SplitConfig(unseen_item_fraction=0.1))
    save_split(cold, tmp_path / "c")
    back = load_split(tmp_path / "c")
    assert isinstance(back, ColdStartSplit)
    for field in attrs.fields(ColdStartSplit):
        assert torch.equal(getattr(back, field.name), getattr(cold, field.name))
    ind = inductive_split(tiny_synthetic, SplitConfig(kind="inductive"))
    save_split(ind, tmp_path / "i")
    back_i = load_split(tmp_path / "i")
    assert isinstance(back_i, InductiveSplit)
    assert torch.equal(back_i.target.new.item, ind.target.new.item)
    assert torch.equal(back_i.source.test.rating, ind.source.test.rating)
    (tmp_path / "junk").write_bytes(b"not a split")
    with pytest.raises(DataError, match="junk"):
        load_split(tmp_path / "junk")


@settings(max_examples=15, deadline=None)
@given(users=st.floats(0.0, 0.5), items=st.floats(0.0, 0.5), seed=st.integers(0, 1000))
def test_inductive_split_properties(users: float, items: float, seed: int) -> None:
    ds = generate(SyntheticConfig(size="tiny", images=False))[0]
    cfg = SplitConfig(kind="inductive", unseen_user_fraction=users, unseen_item_fraction=items,
                      seed=seed)
    split = inductive_split(ds, cfg)
    unseen_global = set(split.source.unseen_users.tolist())
    unseen_global |= set(split.target.unseen_users.tolist())
    for domain, part in ((ds.source, split.source), (ds.target, split.target)):
        n = domain.num_items
        pieces = [_key(getattr(part, p), n) for p in ("train", "val", "test", "new")]
        assert set.union(*pieces) == _key(domain.interactions, n)
        assert sum(map(len, pieces)) == len(domain.interactions)  # a partition
        assert not bool(torch.isin(part.train.user, part.unseen_users).any())
        assert not bool(torch.isin(part.train.item, part.unseen_items).any())
        touches = torch.isin(part.new.user, part.unseen_users) | torch.isin(part.new.item,
                                                                           part.unseen_items)
        assert bool(touches.all())
        assert part.unseen_items.numel() == round(items * n)
    # an overlapping user is unseen in both domains or in neither
    for u in ds.overlapping_users().tolist():
        in_src = u in set(split.source.unseen_users.tolist())
        assert in_src == (u in set(split.target.unseen_users.tolist()))
    assert len(unseen_global) <= round(users * ds.num_users)


def test_inductive_per_user_ratios(tiny_synthetic: CrossDomainDataset) -> None:
    split = inductive_split(tiny_synthetic, SplitConfig(kind="inductive", unseen_user_fraction=0,
                                                        unseen_item_fraction=0))
    part = split.target
    assert len(part.new) == 0
    counts = torch.bincount(tiny_synthetic.target.interactions.user,
                            minlength=tiny_synthetic.num_users)
    train = torch.bincount(part.train.user, minlength=tiny_synthetic.num_users)
    active = counts > 0
    expected = torch.clamp(torch.floor(0.8 * counts[active].double() + 0.5), min=1)
    assert torch.equal(train[active].double(), expected)


def test_split_errors_are_named(tiny_synthetic: CrossDomainDataset) -> None:
    target_only = attrs.evolve(
        tiny_synthetic,
        source=attrs.evolve(tiny_synthetic.source, interactions=tiny_synthetic.source.interactions
                            .of_users(tiny_synthetic.source_only_users(), 60)),
    )
    with pytest.raises(SplitError, match="zero overlapping users"):
        cold_start_split(target_only, SplitConfig())
    with pytest.raises(SplitError, match="no training users"):
        cold_start_split(tiny_synthetic, SplitConfig(beta=0.95, val_fraction=0.99))
    try:  # bad ratios: refused by the config's validator or, failing that, by the split
        bad_ratios = SplitConfig(ratios=(0.5, 0.2, 0.2))
    except ValueError as exc:
        assert "ratios" in str(exc)
    else:
        with pytest.raises(SplitError, match=r"split\.ratios"):
            inductive_split(tiny_synthetic, bad_ratios)
    with pytest.raises(SplitError, match="no training"):
        inductive_split(tiny_synthetic, SplitConfig(unseen_user_fraction=0.99))
