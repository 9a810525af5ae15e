"""INMO's template users and items (MICRec section 4.1): a ranking of the training graph.

Rankings (best first, training nodes only):
- ``sort`` (INMO's default "normalized degree"): a user scores ``sum_{i in N_u} 1 / |N_i|``,
  an item ``sum_{u in N_i} 1 / |N_u|`` (column sums of the row-normalised adjacency);
- ``degree``: number of training edges;
- ``random``: a seeded random order.
The top ``ratio`` of the training nodes become templates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

RANKINGS = ("sort", "degree", "random")


def _dedup(edge_index: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())
    return key // num_items, key % num_items


def node_scores(
    edge_index: Tensor, num_users: int, num_items: int, ranking: str, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Ranking scores ``(users [U], items [I])``, higher is better; untrained nodes -inf."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking: {ranking!r} is not one of {', '.join(map(repr, RANKINGS))}")
    users, items = _dedup(edge_index, num_items)
    user_deg = torch.bincount(users, minlength=num_users).float()  # [U]
    item_deg = torch.bincount(items, minlength=num_items).float()  # [I]
    if ranking == "degree":
        user_score, item_score = user_deg.clone(), item_deg.clone()
    elif ranking == "sort":
        user_score = torch.zeros(num_users).index_add_(0, users, 1.0 / item_deg[items])
        item_score = torch.zeros(num_items).index_add_(0, items, 1.0 / user_deg[users])
    else:
        gen = torch.Generator().manual_seed(seed)
        user_score, item_score = (
            torch.rand(num_users, generator=gen),
            torch.rand(num_items, generator=gen),
        )
    user_score[user_deg == 0] = -math.inf
    item_score[item_deg == 0] = -math.inf
    return user_score, item_score


def _top(score: Tensor, ratio: float) -> Tensor:
    """[n] bool: the top ``ratio`` of the finite-scored nodes (stable tie order by index)."""
    trained = int(torch.isfinite(score).sum())
    count = min(trained, math.ceil(ratio * trained))
    order = torch.sort(score, descending=True, stable=True).indices
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    mask[order[:count]] = True
    return mask


def select_templates(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    ranking: str = "sort",
    ratio: float = 1.0,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Template masks ``(users [U] bool, items [I] bool)`` from the training edges [2, E]."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio: {ratio!r} is not in (0, 1]")
    user_score, item_score = node_scores(edge_index.cpu(), num_users, num_items, ranking, seed=seed)
    device = edge_index.device
    return _top(user_score, ratio).to(device), _top(item_score, ratio).to(device)
