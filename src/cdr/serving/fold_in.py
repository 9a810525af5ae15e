"""Cold-start fold-in: an auxiliary vector for a user known only by an item history.

``fit_fold_in`` fits ``W [Ds, Ds]`` by ridge least squares so that the rating-weighted mean
of a known user's history item vectors, times W, approximates that user's auxiliary vector.
Exact when user vectors are (normalised) sums of item vectors (INMO), fitted otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _history_means(
    user: Tensor, item: Tensor, weight: Tensor, items: Tensor, num_users: int
) -> Tensor:
    """[num_users, Ds]: weighted mean of item vectors per user (zeros without history)."""
    sums = torch.zeros(num_users, items.shape[1]).index_add_(0, user, items[item] * weight[:, None])
    totals = torch.zeros(num_users).index_add_(0, user, weight)
    return sums / totals.clamp_min(1e-12)[:, None]


def fit_fold_in(
    source_user: Tensor,
    source_item: Tensor,
    source_rating: Tensor,
    source_users: Tensor,
    source_items: Tensor,
    ridge: float = 1e-3,
) -> Tensor:
    """Least-squares ``W [Ds, Ds]`` with history_mean @ W ~= source user vector (ridge)."""
    num_users = source_users.shape[0]
    means = _history_means(source_user, source_item, source_rating.float(), source_items, num_users)
    has = torch.zeros(num_users, dtype=torch.bool)
    has[source_user] = True
    x, y = means[has], source_users[has]
    gram = x.T @ x + ridge * torch.eye(x.shape[1])
    return torch.linalg.solve(gram, x.T @ y)
