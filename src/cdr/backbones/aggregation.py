"""Modality-based aggregation (MICRec section 4.2).

Items carry text and image features; a user's features are the mean of the features of the
items it interacted with (in the graph at hand). Similarity
``sim = w * cos(text) + (1 - w) * cos(image)`` equals the dot product of the concatenation
``[sqrt(w) t / |t|, sqrt(1 - w) v / |v|]``, so the top-K neighbours come from blocked matrix
products (never a dense N x N matrix). Each node then adds the mean of its K neighbours'
representations: ``x~ = x + (1/K) sum_{n in N~} x_n``.
Candidates are the nodes with edges in the graph (they have representations); a node without
edges (no user features) receives nothing. A missing modality (None) leaves the other with
weight 1.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from cdr.interfaces import ModalityFeatures

__all__ = ["ModalityFeatures", "Neighbourhoods", "aggregate", "neighbourhoods"]


def mean_of_items(item_features: Tensor, edge_index: Tensor, num_users: int) -> Tensor:
    """``[U, F]``: each user's mean over its items' features (zeros for users without edges)."""
    users, items = edge_index[0], edge_index[1]
    total = item_features.new_zeros(num_users, item_features.shape[1])
    total.index_add_(0, users, item_features[items])
    count = torch.bincount(users, minlength=num_users).clamp(min=1).to(item_features.dtype)
    return total / count[:, None]


def similarity_features(text: Tensor | None, image: Tensor | None, w: float) -> Tensor:
    """``[N, Ft + Fv]`` whose dot products are ``w cos(t) + (1 - w) cos(v)`` (zero rows stay 0)."""
    parts = []
    if text is not None:
        parts.append(F.normalize(text.float(), dim=1) * math.sqrt(w if image is not None else 1.0))
    if image is not None:
        parts.append(
            F.normalize(image.float(), dim=1) * math.sqrt(1.0 - w if text is not None else 1.0)
        )
    if not parts:
        raise ValueError("similarity_features: no modality given (text and image are None)")
    return torch.cat(parts, dim=1)


def top_k_neighbours(
    features: Tensor, candidates: Tensor, k: int, block_size: int = 2048
) -> tuple[Tensor, int]:
    """Indices ``[N, K']`` of each row's most similar candidate rows (itself excluded).

    features: [N, F] (dot product = similarity); candidates: [N] bool. K' = min(k, number of
    candidates - 1), so every row finds K' distinct candidates other than itself.
    """
    n = features.shape[0]
    k_eff = max(0, min(k, int(candidates.sum()) - 1))
    if k_eff == 0:
        return torch.empty(n, 0, dtype=torch.long, device=features.device), 0
    penalty = torch.where(candidates, 0.0, -math.inf).to(features)  # [N]
    out = torch.empty(n, k_eff, dtype=torch.long, device=features.device)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        sim = features[start:stop] @ features.T + penalty  # [b, N]
        rows = torch.arange(stop - start, device=features.device)
        sim[rows, rows + start] = -math.inf  # not its own neighbour
        out[start:stop] = sim.topk(k_eff, dim=1).indices
    return out, k_eff


def aggregate(x: Tensor, neighbours: Tensor, receives: Tensor) -> Tensor:
    """``x~ = x + mean(x[neighbours])`` for rows where ``receives`` [N] is True (eq. 4.2)."""
    if neighbours.shape[1] == 0:
        return x
    extra = x[neighbours].mean(1)  # [N, D]
    return x + extra * receives[:, None].to(x.dtype)


@attrs.frozen(eq=False)
class Neighbourhoods:
    """Top-K neighbours of users [U, K] and items [I, K] and who receives aggregation."""

    users: Tensor
    items: Tensor
    user_receives: Tensor
    item_receives: Tensor


def neighbourhoods(
    modalities: ModalityFeatures,
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    k: int,
    w: float,
    block_size: int = 2048,
) -> Neighbourhoods:
    """Users' and items' multimodal top-K neighbours in the graph ``edge_index`` [2, E]."""
    user_deg = torch.bincount(edge_index[0], minlength=num_users)  # [U]
    item_deg = torch.bincount(edge_index[1], minlength=num_items)  # [I]
    text, image = modalities.text, modalities.image
    item_feat = similarity_features(text, image, w)  # [I, F]
    user_feat = similarity_features(
        None if text is None else mean_of_items(text.float(), edge_index, num_users),
        None if image is None else mean_of_items(image.float(), edge_index, num_users),
        w,
    )  # [U, F]
    users, _ = top_k_neighbours(user_feat, user_deg > 0, k, block_size)
    items, _ = top_k_neighbours(item_feat, item_deg > 0, k, block_size)
    return Neighbourhoods(users, items, user_deg > 0, torch.ones_like(item_deg, dtype=torch.bool))
