"""Full-ranking top-k metrics on dense ``[num_users, num_items]`` tensors, batched over users.

Definitions, per user ``u`` with relevance ``r[u, i] >= 0`` (graded, e.g. ratings, or binary;
0 = not relevant) and ``rank`` starting at 1:

* **Ranking order.** Items are ordered by score descending; **ties are broken by the lower
  item index first**. This is a total order, so every metric is deterministic and does not
  depend on how ``torch.topk`` happens to order equal values. Items whose score is ``-inf``
  are excluded (e.g. training interactions): they can only occupy top-k slots of a user with
  fewer than k other items, and never count as hits there.
* ``hits@k`` = number of relevant items (``r > 0``) among the top k non-excluded items.
* ``DCG@k = sum_{rank <= k} r[u, item at rank] / log2(rank + 1)`` (gain = relevance).
* ``IDCG@k`` = the same sum over ``r[u]`` sorted descending; ``NDCG@k = DCG@k / IDCG@k``.
* ``precision@k = hits@k / k`` (k as requested, even when there are fewer than k items).
* ``recall@k = hits@k / |{i : r[u, i] > 0}|``.
* ``hit@k = 1`` if ``hits@k > 0`` else 0.

Users without any relevant item are skipped: per-user variants hold NaN for them and the means
are taken over the other users (NaN when no user has a relevant item). Relevance of excluded
items still counts in IDCG and in the recall denominator; pass 0 there if that is not wanted.

Only one batch of ``batch_size`` users is selected/sorted at a time: the top-k comes from
``torch.topk`` plus a ``[B, k]`` sort, never a full ``[B, num_items]`` sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

METRICS = ("ndcg", "precision", "recall", "hit")
"""Metric names as they appear in keys ``"<metric>@<k>"``."""


def top_k_items(scores: Tensor, k: int) -> Tensor:
    """[B, min(k, num_items)] item indices of the top k of each row of ``scores`` [B, num_items].

    Ordered by rank: score descending, ties by lower item index (see the module docstring).
    Uses ``torch.topk`` (k + 1 items) for the selection; only rows whose k-th and (k+1)-th
    scores are equal (a tie straddles the cut) are resolved through a mask over the row, and the
    chosen k items are then sorted (``[B, k]``, stable) so equal scores keep ascending item order.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [num_users, num_items], got {tuple(scores.shape)}")
    k = min(int(k), scores.shape[1])
    if k <= 0:
        return torch.empty(scores.shape[0], 0, dtype=torch.long, device=scores.device)
    # One extra item tells whether a tie straddles the cut (k-th score == (k+1)-th score).
    extra = int(k < scores.shape[1])
    values, index = torch.topk(scores, k + extra, dim=1, sorted=True)  # [B, k(+1)]
    if bool(torch.isnan(values[:, 0]).any()):  # topk ranks NaN above everything
        raise ValueError("scores contain NaN")
    chosen = index[:, :k].sort(dim=1).values  # [B, k] ascending item index
    if extra:
        ambiguous = values[:, k - 1] == values[:, k]  # [B]
        if bool(ambiguous.any()):
            rows = ambiguous.nonzero().flatten()
            sub, cut = scores[rows], values[rows, k - 1 : k]  # [R, I], [R, 1]
            above = sub > cut
            tied = sub == cut
            room = k - above.sum(dim=1, keepdim=True)  # [R, 1] tied items that still fit
            mask = above | (tied & (tied.cumsum(dim=1, dtype=torch.int32) <= room))
            chosen[rows] = mask.nonzero()[:, 1].view(-1, k)  # exactly k per row, ascending
    order = torch.sort(scores.gather(1, chosen), dim=1, descending=True, stable=True).indices
    return chosen.gather(1, order)


def metrics_from_top_k(
    scores: Tensor, top_items: Tensor, relevance: Tensor, ks: Sequence[int]
) -> dict[str, Tensor]:
    """Per-user ``ndcg@k``, ``precision@k``, ``recall@k``, ``hit@k`` for each k in ``ks``.

    scores: [B, I] (``-inf`` = excluded); top_items: [B, K] from :func:`top_k_items` with
    ``K >= min(max(ks), I)``; relevance: [B, I]. Returns float64 tensors [B], NaN for users
    without relevant items. Several relevance matrices can reuse one ``top_items``.
    """
    if relevance.shape != scores.shape:
        raise ValueError(
            f"relevance {tuple(relevance.shape)} and scores {tuple(scores.shape)} differ"
        )
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive cut-offs, got {list(ks)}")
    if relevance.numel() and float(relevance.min()) < 0:
        raise ValueError("relevance must be >= 0 (0 = not relevant)")
    num_rows, num_items = scores.shape
    depth = top_items.shape[1]  # K
    if depth < min(max(ks), num_items):
        raise ValueError(f"top_items holds {depth} items, fewer than max(ks) = {max(ks)}")
    device = scores.device
    f64 = torch.float64
    retrieved = scores.gather(1, top_items) > -math.inf  # [B, K]
    gains = relevance.gather(1, top_items).to(f64) * retrieved  # [B, K]
    discount = 1.0 / torch.log2(torch.arange(2, depth + 2, device=device, dtype=f64))  # [K]
    dcg = (gains * discount).cumsum(dim=1)  # [B, K]
    hits = (gains > 0).cumsum(dim=1).to(f64)  # [B, K]
    ideal = torch.topk(relevance, depth, dim=1).values.to(f64)  # [B, K] sorted descending
    idcg = (ideal * discount).cumsum(dim=1)  # [B, K]
    num_relevant = torch.sign(relevance).sum(dim=1).to(f64)  # [B] (relevance >= 0)
    skip = num_relevant == 0
    nan = torch.full((num_rows,), math.nan, dtype=f64, device=device)
    out: dict[str, Tensor] = {}
    for k in ks:
        col = min(k, depth) - 1
        if col < 0:  # no items at all: nothing can be retrieved
            zero = torch.zeros(num_rows, dtype=f64, device=device)
            dcg_k = idcg_k = hits_k = zero
        else:
            dcg_k, idcg_k, hits_k = dcg[:, col], idcg[:, col], hits[:, col]
        out[f"ndcg@{k}"] = torch.where(skip, nan, dcg_k / idcg_k.clamp_min(1e-300))
        out[f"precision@{k}"] = torch.where(skip, nan, hits_k / k)
        out[f"recall@{k}"] = torch.where(skip, nan, hits_k / num_relevant.clamp_min(1.0))
        out[f"hit@{k}"] = torch.where(skip, nan, (hits_k > 0).to(f64))
    return out


def ranking_metrics_per_user(
    scores: Tensor, relevance: Tensor, ks: Sequence[int], *, batch_size: int = 1024
) -> dict[str, Tensor]:
    """All of ``ndcg@k``, ``precision@k``, ``recall@k``, ``hit@k`` for each k: [num_users] each.

    float64, NaN for users without relevant items; ``batch_size`` users are ranked at a time.
    """
    if scores.dim() != 2 or relevance.shape != scores.shape:
        raise ValueError(
            "scores and relevance must both be [num_users, num_items], got "
            f"{tuple(scores.shape)} and {tuple(relevance.shape)}"
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    ks = [int(k) for k in ks]
    parts: list[dict[str, Tensor]] = []
    for start in range(0, scores.shape[0], batch_size):
        batch = scores[start : start + batch_size]  # [B, I]
        top = top_k_items(batch, max(ks) if ks else 0)  # [B, K]
        parts.append(metrics_from_top_k(batch, top, relevance[start : start + batch_size], ks))
    if not parts:
        empty = torch.empty(0, dtype=torch.float64, device=scores.device)
        return {f"{m}@{k}": empty for k in ks for m in METRICS}
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def mean_over_users(values: Tensor) -> float:
    """Mean of the non-NaN entries (users with relevant items); NaN when there are none."""
    kept = values[~torch.isnan(values)]
    return float(kept.mean()) if kept.numel() else math.nan


def _one(metric: str, scores: Tensor, relevance: Tensor, k: int, batch_size: int) -> Tensor:
    return ranking_metrics_per_user(scores, relevance, (k,), batch_size=batch_size)[f"{metric}@{k}"]


def ndcg_at_k_per_user(
    scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024
) -> Tensor:
    """[num_users] NDCG@k (gain = relevance, discount 1/log2(rank + 1)); NaN if no relevant."""
    return _one("ndcg", scores, relevance, k, batch_size)


def precision_at_k_per_user(
    scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024
) -> Tensor:
    """[num_users] hits@k / k; NaN for users without relevant items."""
    return _one("precision", scores, relevance, k, batch_size)


def recall_at_k_per_user(
    scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024
) -> Tensor:
    """[num_users] hits@k / number of relevant items; NaN for users without relevant items."""
    return _one("recall", scores, relevance, k, batch_size)


def hit_rate_at_k_per_user(
    scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024
) -> Tensor:
    """[num_users] 1.0 if a relevant item is in the top k, else 0.0; NaN if none is relevant."""
    return _one("hit", scores, relevance, k, batch_size)


def ndcg_at_k(scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024) -> float:
    """Mean NDCG@k over users with >= 1 relevant item (definitions in the module docstring)."""
    return mean_over_users(ndcg_at_k_per_user(scores, relevance, k, batch_size=batch_size))


def precision_at_k(scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024) -> float:
    """Mean of hits@k / k over users with >= 1 relevant item."""
    return mean_over_users(precision_at_k_per_user(scores, relevance, k, batch_size=batch_size))


def recall_at_k(scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024) -> float:
    """Mean of hits@k / (number of relevant items) over users with >= 1 relevant item."""
    return mean_over_users(recall_at_k_per_user(scores, relevance, k, batch_size=batch_size))


def hit_rate_at_k(scores: Tensor, relevance: Tensor, k: int, *, batch_size: int = 1024) -> float:
    """Fraction of users (with >= 1 relevant item) having a relevant item in their top k."""
    return mean_over_users(hit_rate_at_k_per_user(scores, relevance, k, batch_size=batch_size))
