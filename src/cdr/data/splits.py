"""Cold-start (MuSiC / PTUPCDR) and inductive (MICRec / INMO) splits, saved and reloadable.

Every sample is drawn with NumPy's PCG64 seeded from ``SplitConfig.seed`` over a *sorted*
id list, so a split is identical across runs and machines. Splits are stored as one
safetensors file (tensors by name + the split kind), byte-identical for identical inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from cdr.config.experiment import SplitConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.validate import check_usable
from cdr.errors import DataError, SplitError
from cdr.runs import atomic_write_bytes
from cdr.seeding import derive_seed

SPLIT_FORMAT = "cdr-split-1"
ItemSet = Literal["seen", "unseen", "all"]


def _rng(cfg: SplitConfig, *labels: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive_seed(cfg.seed, *labels)))


def _sample(ids: Tensor, fraction: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Split sorted ``ids`` into (sampled, rest), both sorted; round(fraction * n) sampled."""
    n = int(ids.numel())
    perm = torch.from_numpy(rng.permutation(n))
    k = round(fraction * n)
    return ids[perm[:k]].sort().values, ids[perm[k:]].sort().values


def _mask(index: Tensor, size: int) -> Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[index] = True
    return mask


@attrs.frozen(eq=False)
class ColdStartSplit:
    """Cold-start split of the target domain (1-D sorted LongTensors of global user ids /
    target item ids). The auxiliary domain is fully visible for all users.

    train_users: overlapping users for stage-2 training; val_users: overlapping, for model
    selection; test_users: cold-start users (target interactions hidden); side_users:
    target-only users (stage 1); unseen_items: target items held out (dual cold-start).
    """

    train_users: Tensor
    val_users: Tensor
    test_users: Tensor
    side_users: Tensor
    unseen_items: Tensor

    def target_interactions(
        self, dataset: CrossDomainDataset, users: Tensor, items: ItemSet = "seen"
    ) -> Interactions:
        """Target interactions of ``users`` restricted to seen / unseen / all items."""
        target = dataset.target
        inter = target.interactions.of_users(users, dataset.num_users)
        if items == "all":
            return inter
        unseen = _mask(self.unseen_items, target.num_items)[inter.item]
        return inter.select(unseen if items == "unseen" else ~unseen)


def cold_start_split(dataset: CrossDomainDataset, cfg: SplitConfig) -> ColdStartSplit:
    """MuSiC / PTUPCDR protocol: ``beta`` of the overlapping users become test cold-start
    users; ``val_fraction`` of the remaining overlapping users validate; the rest train.

    DataError first if a domain cannot be trained or ranked on (``validate.check_usable``).
    """
    check_usable(dataset)
    overlap = dataset.overlapping_users()
    if overlap.numel() == 0:
        raise SplitError(
            f"dataset {dataset.name!r}: zero overlapping users, so no cold-start split",
            hint="the two domains must share user ids",
        )
    test, rest = _sample(overlap, cfg.beta, _rng(cfg, "cold-start", "test"))
    val, train = _sample(rest, cfg.val_fraction, _rng(cfg, "cold-start", "val"))
    if test.numel() == 0:
        raise SplitError(
            f"split.beta: {cfg.beta} of {overlap.numel()} overlapping users leaves no test users"
        )
    if train.numel() == 0:
        raise SplitError(
            f"split.beta / split.val_fraction: {overlap.numel()} overlapping users leave no "
            "training users",
            hint="lower split.beta or split.val_fraction",
        )
    unseen = torch.empty(0, dtype=torch.long)
    if cfg.unseen_item_fraction > 0:
        all_items = torch.arange(dataset.target.num_items)
        unseen, seen = _sample(all_items, cfg.unseen_item_fraction,
                               _rng(cfg, "cold-start", "items"))
        if seen.numel() == 0:
            raise SplitError(f"split.unseen_item_fraction: {cfg.unseen_item_fraction} "
                             "leaves no seen target items")
    return ColdStartSplit(train, val, test, dataset.side_users(), unseen)


@attrs.frozen(eq=False)
class DomainInductiveSplit:
    """One domain of an inductive split (INMO protocol).

    unseen_users / unseen_items: sorted ids held out of training; train: edges seen in
    training; new: E_new, the training-part edges that touch an unseen user or item (given
    only at inference); val / test: every user's held-out edges. Model selection uses
    ``validation``: the val edges between seen users and seen items (INMO's protocol: the
    training dataset is the seen part, so its validation edges are seen x seen); all val
    edges are masked when ranking at test.
    """

    unseen_users: Tensor
    unseen_items: Tensor
    train: Interactions
    val: Interactions
    test: Interactions
    new: Interactions

    @property
    def validation(self) -> Interactions:
        """[E'] the val edges whose user and item are both seen in training."""
        users = torch.isin(self.val.user, self.unseen_users.to(self.val.user.device))
        items = torch.isin(self.val.item, self.unseen_items.to(self.val.item.device))
        return self.val.select(~users & ~items)


@attrs.frozen(eq=False)
class InductiveSplit:
    source: DomainInductiveSplit
    target: DomainInductiveSplit


def _check_ratios(ratios: tuple[float, float, float]) -> None:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise SplitError(f"split.ratios: {tuple(ratios)} must be 3 non-negative numbers "
                         "summing to 1")
    if ratios[0] == 0:
        raise SplitError("split.ratios: a train ratio of 0 leaves nothing to train on")


def _per_user_parts(inter: Interactions, ratios: tuple[float, float, float],
                    rng: np.random.Generator) -> Tensor:
    """[E] part per edge (0 train, 1 val, 2 test): each user's n edges are shuffled, then
    cut at b1 = max(1, floor(r_train n + 1/2)) and b2 = floor((r_train + r_val) n + 1/2)."""
    e = len(inter)
    key = rng.random(e)
    order = torch.from_numpy(np.lexsort((key, inter.user.numpy())))
    user_sorted = inter.user[order]
    counts = torch.bincount(user_sorted)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(e) - starts[user_sorted]  # position within the user's shuffled edges
    n = counts[user_sorted].double()
    b1 = torch.clamp(torch.floor(ratios[0] * n + 0.5), min=1)
    b2 = torch.maximum(torch.floor((ratios[0] + ratios[1]) * n + 0.5), b1)
    part_sorted = torch.where(rank < b1, 0, torch.where(rank < b2, 1, 2))
    part = torch.empty(e, dtype=torch.long)
    part[order] = part_sorted.long()
    return part


def _inductive_domain(domain: Domain, role: str, unseen_users: Tensor, num_users: int,
                      cfg: SplitConfig) -> DomainInductiveSplit:
    items = torch.arange(domain.num_items)
    unseen_items, _ = _sample(items, cfg.unseen_item_fraction, _rng(cfg, "inductive", role))
    inter = domain.interactions
    part = _per_user_parts(inter, cfg.ratios, _rng(cfg, "inductive", role, "edges"))
    touches = (_mask(unseen_users, num_users)[inter.user]
               | _mask(unseen_items, domain.num_items)[inter.item])
    train = inter.select((part == 0) & ~touches)
    if len(train) == 0:
        raise SplitError(f"domain {domain.name!r}: the inductive split leaves no training "
                         "edges", hint="lower split.unseen_user_fraction / unseen_item_fraction")
    return DomainInductiveSplit(
        unseen_users=unseen_users[torch.isin(unseen_users, domain.users())],
        unseen_items=unseen_items,
        train=train,
        val=inter.select(part == 1),
        test=inter.select(part == 2),
        new=inter.select((part == 0) & touches),
    )


def inductive_split(dataset: CrossDomainDataset, cfg: SplitConfig) -> InductiveSplit:
    """MICRec / INMO protocol: ``unseen_user_fraction`` of the (global) users and
    ``unseen_item_fraction`` of each domain's items are unseen; every user's edges split by
    ``ratios``; training edges touching an unseen user or item move to E_new.

    DataError first if a domain cannot be trained or ranked on (``validate.check_usable``).
    """
    check_usable(dataset)
    _check_ratios(cfg.ratios)
    unseen_users, seen_users = _sample(torch.arange(dataset.num_users), cfg.unseen_user_fraction,
                                       _rng(cfg, "inductive", "users"))
    if seen_users.numel() == 0:
        raise SplitError(f"split.unseen_user_fraction: {cfg.unseen_user_fraction} leaves no "
                         "training users")
    return InductiveSplit(
        source=_inductive_domain(dataset.source, "source", unseen_users, dataset.num_users, cfg),
        target=_inductive_domain(dataset.target, "target", unseen_users, dataset.num_users, cfg),
    )


_INTER_FIELDS = ("user", "item", "rating", "timestamp")


def _flatten(split: ColdStartSplit | InductiveSplit) -> tuple[str, dict[str, Tensor]]:
    if isinstance(split, ColdStartSplit):
        return "cold-start", {f.name: getattr(split, f.name)
                              for f in attrs.fields(ColdStartSplit)}
    tensors: dict[str, Tensor] = {}
    for role in ("source", "target"):
        part: DomainInductiveSplit = getattr(split, role)
        tensors[f"{role}.unseen_users"] = part.unseen_users
        tensors[f"{role}.unseen_items"] = part.unseen_items
        for name in ("train", "val", "test", "new"):
            inter: Interactions = getattr(part, name)
            for field in _INTER_FIELDS:
                tensors[f"{role}.{name}.{field}"] = getattr(inter, field)
    return "inductive", tensors


def save_split(split: ColdStartSplit | InductiveSplit, path: Path) -> None:
    """Write ``split`` atomically as one safetensors file (deterministic bytes)."""
    kind, tensors = _flatten(split)
    data = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    # one metadata key: safetensors writes metadata from a hash map (unordered)
    atomic_write_bytes(path, st_save(data, metadata={"format": f"{SPLIT_FORMAT} {kind}"}))


def load_split(path: Path) -> ColdStartSplit | InductiveSplit:
    """Read a split written by ``save_split``."""
    if not path.is_file():
        raise DataError(f"{path}: no such split file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a split file ({exc})") from exc
    fmt, _, kind = meta.get("format", "").partition(" ")
    if fmt != SPLIT_FORMAT or kind not in ("cold-start", "inductive"):
        raise DataError(f"{path}: format {meta.get('format')!r}, expected {SPLIT_FORMAT!r}")
    try:
        if kind == "cold-start":
            return ColdStartSplit(**{f.name: tensors[f.name]
                                     for f in attrs.fields(ColdStartSplit)})
        parts = {}
        for role in ("source", "target"):
            inters = {
                name: Interactions(*(tensors[f"{role}.{name}.{f}"] for f in _INTER_FIELDS))
                for name in ("train", "val", "test", "new")
            }
            parts[role] = DomainInductiveSplit(
                unseen_users=tensors[f"{role}.unseen_users"],
                unseen_items=tensors[f"{role}.unseen_items"],
                **inters,
            )
        return InductiveSplit(**parts)
    except KeyError as exc:
        raise DataError(f"{path}: split file lacks tensor {exc.args[0]!r}") from exc
