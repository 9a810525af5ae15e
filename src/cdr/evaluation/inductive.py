"""Inductive evaluation (INMO / MICRec protocol, MICRec section 5.1, Table 4, Figure 2).

Every test user ranks all items of the domain, with their train, ``E_new`` and validation
interactions masked (``-inf``; INMO's code masks train + validation of the full dataset);
the held-out interactions are the relevant items (binary gains). Model selection
(``on="val"``) ranks the seen-user x seen-item validation edges with train masked. Results
come per slice of the test edges:

* ``"<users>-users/<items>-items"`` for users in all/seen/unseen x items in all/seen/unseen
  (nine slices; "unseen" = in ``split.unseen_users`` / ``split.unseen_items``). Item slices
  restrict the relevant items, not the ranking: the ranking is always over all items.
* ``"tail_items"``: all users, relevant items restricted to the bottom 25% of items by
  frequency (Table 4); ties in frequency put the lower item index in the tail first.

A user enters a slice only if it has at least one relevant item there. Pass ``ks=range(5, 101,
5)`` for the NDCG@N curve of Figure 2 (N = 5..100). Each user batch is scored and ranked once
and the top-k is shared by all slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from cdr.data.records import Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.evaluation.ranking import (
    RankingResult,
    RowLookup,
    ScoreFn,
    ranked_batches,
    users_with_relevant,
)
from cdr.metrics.ranking import metrics_from_top_k

SEEN_UNSEEN = ("all", "seen", "unseen")
TAIL = "tail_items"
ALL = "all-users/all-items"
"""The overall slice: every test user, every relevant item."""
NDCG_CURVE_KS = tuple(range(5, 101, 5))
"""N = 5, 10, ..., 100 for the NDCG@N curve (MICRec Figure 2)."""

TailBy = Literal["observed", "train", "all"]


def slice_name(users: str, items: str) -> str:
    """``"<users>-users/<items>-items"``, e.g. ``"unseen-users/all-items"``."""
    return f"{users}-users/{items}-items"


def tail_items(
    split: DomainInductiveSplit, num_items: int, fraction: float = 0.25, by: TailBy = "observed"
) -> Tensor:
    """Sorted ids of the ``floor(fraction * num_items)`` (>= 1) least frequent items.

    Frequency counts ``by``: "observed" = train + E_new (the interactions a model sees at
    inference), "train" = training interactions only (every unseen item then has count 0),
    "all" = train + new + val + test. Ties: the lower item index is taken first.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    parts = {
        "train": [split.train],
        "observed": [split.train, split.new],
        "all": [split.train, split.new, split.val, split.test],
    }[by]
    items = torch.cat([p.item.cpu() for p in parts])
    counts = torch.bincount(items, minlength=num_items)[:num_items]  # [I]
    size = max(1, math.floor(fraction * num_items))
    return torch.sort(counts, stable=True).indices[:size].sort().values


def evaluate_inductive(
    score_fn: ScoreFn,
    split: DomainInductiveSplit,
    num_users: int,
    num_items: int,
    *,
    ks: Sequence[int] = (20,),
    batch_size: int = 1024,
    on: Literal["test", "val"] = "test",
    tail_fraction: float = 0.25,
    tail_by: TailBy = "observed",
) -> dict[str, RankingResult]:
    """Full-ranking Precision/Recall/NDCG/Hit@k per slice (see the module docstring).

    score_fn: global user ids [B] -> scores [B, num_items]; ``on`` picks the relevant edges
    (``split.test``, or ``split.validation`` for model selection); masked: train + new
    (+ val at test).
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    held_out = split.test if on == "test" else split.validation
    users = users_with_relevant(held_out.user, held_out, graded=False)  # [U] sorted
    if users.numel() and int(users[-1]) >= num_users:
        raise ValueError(f"user id {int(users[-1])} >= num_users {num_users}")

    unseen_item = torch.zeros(num_items, dtype=torch.bool)
    unseen_item[split.unseen_items.cpu()] = True
    tail = torch.zeros(num_items, dtype=torch.bool)
    tail[tail_items(split, num_items, tail_fraction, tail_by)] = True
    item_masks = {"all": None, "seen": ~unseen_item, "unseen": unseen_item, TAIL: tail}
    held_items = held_out.item.cpu()
    lookups: dict[str, RowLookup] = {}
    for name, mask in item_masks.items():
        edges: Interactions = held_out if mask is None else held_out.select(mask[held_items])
        lookups[name] = RowLookup.build(users, edges, torch.ones(len(edges)))
    masked = [split.train, split.new] + ([split.val] if on == "test" else [])
    exclude = Interactions.concat(masked)
    excl = RowLookup.build(users, exclude, torch.ones(len(exclude)))

    parts: dict[str, list[dict[str, Tensor]]] = {name: [] for name in item_masks}
    for start, scores, top in ranked_batches(score_fn, users, num_items, excl, max(ks), batch_size):
        end = start + scores.shape[0]
        for name, lookup in lookups.items():
            relevance = lookup.dense(start, end, num_items, scores.device)  # [B, I]
            metrics = metrics_from_top_k(scores, top, relevance, ks)
            parts[name].append({k: v.cpu() for k, v in metrics.items()})

    names = [f"{m}@{k}" for k in ks for m in ("ndcg", "precision", "recall", "hit")]
    per_item_slice = {
        name: {
            metric: torch.cat([p[metric] for p in chunks])
            if chunks
            else torch.empty(0, dtype=torch.float64)
            for metric in names
        }
        for name, chunks in parts.items()
    }
    unseen_user = torch.isin(users, split.unseen_users.cpu())  # [U]
    user_masks = {"all": torch.ones_like(unseen_user), "seen": ~unseen_user, "unseen": unseen_user}
    results: dict[str, RankingResult] = {}
    for user_slice in SEEN_UNSEEN:
        for item_slice in SEEN_UNSEEN:
            values = per_item_slice[item_slice]
            keep = user_masks[user_slice] & ~torch.isnan(values[names[0]])
            results[slice_name(user_slice, item_slice)] = RankingResult(
                users[keep], {k: v[keep] for k, v in values.items()}
            )
    values = per_item_slice[TAIL]
    keep = ~torch.isnan(values[names[0]])
    results[TAIL] = RankingResult(users[keep], {k: v[keep] for k, v in values.items()})
    return results
