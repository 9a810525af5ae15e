"""Reference predictors every table shows next to its models: a model below them has
learned nothing personal.

- ``global_mean``: every rating is the mean training rating.
- ``item_mean``: an item's mean training rating (the global mean for an item without
  training ratings); it also ranks items by that mean.
- ``user_aux_mean``: a cold-start user's mean rating in the auxiliary domain (the global
  mean for a user without auxiliary ratings) — the only personal signal a cold user has
  without transfer.
- ``popularity``: items ranked by their number of training interactions.

They are evaluated by exactly the code that evaluates the models (the cold-start metrics
of ``pipelines.coldstart_eval`` through a dot scorer over one-dimensional vectors whose dot
product is the reference's prediction, and ``evaluation.inductive`` for the inductive
slices), on the same test users and items with the same masks, so their numbers are
directly comparable. Keys: ``ref/<name>/<metric>``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cdr.data.records import Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.evaluation.inductive import ALL, evaluate_inductive
from cdr.evaluation.results import flatten
from cdr.scorers.dot import DotScorer

PREFIX = "ref"
RATING_REFERENCES = ("global_mean", "item_mean", "user_aux_mean")
RANKING_REFERENCES = ("item_mean", "popularity")
#: row labels of tables, in the order shown
LABELS = {
    "global_mean": "global mean",
    "item_mean": "item mean",
    "user_aux_mean": "user auxiliary mean",
    "popularity": "popularity",
}


def item_means(train: Interactions, num_items: int) -> tuple[Tensor, float]:
    """[I] mean training rating per item (global mean where an item has none), the global
    mean."""
    rating = train.rating.double()
    global_mean = float(rating.mean()) if rating.numel() else 0.0
    sums = torch.zeros(num_items, dtype=torch.float64).index_add_(0, train.item, rating)
    counts = torch.bincount(train.item, minlength=num_items).double()
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.tensor(global_mean))
    return means.float(), global_mean


def user_means(inter: Interactions, num_users: int, fallback: float) -> Tensor:
    """[U] mean rating per user over ``inter`` (``fallback`` where a user has none)."""
    rating = inter.rating.double()
    sums = torch.zeros(num_users, dtype=torch.float64).index_add_(0, inter.user, rating)
    counts = torch.bincount(inter.user, minlength=num_users).double()
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.tensor(fallback)).float()


def popularity(train: Interactions, num_items: int) -> Tensor:
    """[I] training interactions per item (ties: the lower item index ranks first)."""
    return torch.bincount(train.item, minlength=num_items).float()


def cold_start_references(
    train: Interactions,
    auxiliary: Interactions,
    users: Tensor,
    num_users: int,
    num_items: int,
) -> dict[str, tuple[Tensor, Tensor]]:
    """(user vectors [B, 1], item vectors [I, 1]) per reference for cold users ``users``
    [B]: the dot product of the two is the reference's prediction. ``train``: the target
    ratings training may see; ``auxiliary``: the auxiliary domain's ratings."""
    means, global_mean = item_means(train, num_items)
    ones_u = torch.ones(users.numel(), 1)
    ones_i = torch.ones(num_items, 1)
    aux = user_means(auxiliary, num_users, global_mean)[users]
    return {
        "global_mean": (ones_u, torch.full((num_items, 1), global_mean)),
        "item_mean": (ones_u, means[:, None]),
        "user_aux_mean": (aux[:, None], ones_i),
        "popularity": (ones_u, popularity(train, num_items)[:, None]),
    }


def inductive_popularity(
    split: DomainInductiveSplit,
    num_users: int,
    num_items: int,
    ks: tuple[int, ...],
    batch_size: int,
    prefix: str,
) -> dict[str, float]:
    """Popularity (counted on the training edges) on every inductive slice, with the same
    masks as the models: ``ref/popularity/<prefix>/<slice>/<metric>``, and the all-users /
    all-items slice also as ``ref/popularity/<prefix>/<metric>`` (as the models' keys)."""
    counts = popularity(split.train, num_items)

    def score(batch: Tensor) -> Tensor:
        return DotScorer().score(torch.ones(batch.numel(), 1), counts[:, None])

    results = evaluate_inductive(score, split, num_users, num_items, ks=ks, batch_size=batch_size)
    out = {f"{PREFIX}/popularity/{prefix}/{key}": value for key, value in flatten(results).items()}
    out.update(
        {f"{PREFIX}/popularity/{prefix}/{k}": v for k, v in results[ALL].summary().items()}
    )
    return out
