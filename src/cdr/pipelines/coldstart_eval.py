"""Cold-start evaluation: rating error, full-ranking top-k and rated-item NDCG (MuSiC 4.1.2).

Two NDCG flavours are reported, because MuSiC's NDCG (~0.85 on 160k items) can only be the
ranking of each user's *rated* test items by predicted rating, with the ratings as gains:
``ndcg@k`` ranks all candidate items with the ratings as graded gains (the evaluation
protocol of cdr.metrics; precision/recall/hit count any rated item as a hit);
``rated_ndcg@k`` ranks only the user's rated items (graded gains, the paper's table).
Ratings and scores come from the run's ``Scorer`` (``rate`` for aligned pairs, ``score``
for all items).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cdr.data.records import Interactions
from cdr.evaluation.ranking import RankingResult, evaluate_ranking
from cdr.evaluation.rating import evaluate_rating
from cdr.interfaces import Scorer
from cdr.metrics.ranking import ndcg_at_k_per_user


def rated_ndcg(
    scorer: Scorer,
    user_vectors: Tensor,
    row_of: Tensor,
    items: Tensor,
    inter: Interactions,
    k: int,
    batch_size: int = 1024,
) -> Tensor:
    """Per-user NDCG@k of ranking each user's rated items by ``scorer.rate`` (gain = rating).

    user_vectors [B, D] with row_of [num_users] -> row (or -1); items [I, D]; inter: the
    held-out ratings. Returns [U'] for the sorted users of ``inter``.
    """
    users = torch.unique(inter.user)
    out = []
    for start in range(0, users.numel(), batch_size):
        chunk = users[start : start + batch_size]
        local = torch.full((int(row_of.numel()),), -1, dtype=torch.long)
        local[chunk] = torch.arange(chunk.numel())
        sel = local[inter.user] >= 0
        r_user, r_item = local[inter.user[sel]], inter.item[sel]
        scores = torch.full((chunk.numel(), items.shape[0]), -math.inf)
        relevance = torch.zeros(chunk.numel(), items.shape[0])
        pred = scorer.rate(user_vectors[row_of[inter.user[sel]]], items[r_item]).cpu()
        scores[r_user, r_item] = pred.float()
        relevance[r_user, r_item] = inter.rating[sel].float().clamp_min(1e-6)
        out.append(ndcg_at_k_per_user(scores, relevance, k))
    return torch.cat(out) if out else torch.empty(0)


def evaluate_cold_users(
    scorer: Scorer,
    user_vectors: Tensor,
    users: Tensor,
    items: Tensor,
    relevant: Interactions,
    candidates: Tensor,
    *,
    ks: tuple[int, ...],
    k: int,
    batch_size: int,
    prefix: str = "",
) -> tuple[dict[str, float], dict[str, RankingResult]]:
    """Metrics of cold users ``users`` [B] with vectors ``user_vectors`` [B, D].

    items [I, D]; relevant: their held-out ratings on ``candidates`` (bool [I]: the items
    they are ranked among). Returns flat metrics and per-user results.
    """
    num_users = int(max(int(users.max()) + 1, int(relevant.user.max()) + 1 if len(relevant) else 0))
    row_of = torch.full((num_users,), -1, dtype=torch.long)
    row_of[users] = torch.arange(users.numel())
    vectors, item_vectors = user_vectors.detach().cpu(), items.detach().cpu()
    metrics: dict[str, float] = {}
    per_user: dict[str, RankingResult] = {}
    if len(relevant) == 0:
        return metrics, per_user
    pred = scorer.rate(vectors[row_of[relevant.user]], item_vectors[relevant.item])
    for name, value in evaluate_rating(pred, relevant.rating.float()).items():
        metrics[f"{prefix}{name}"] = value
    excluded = ~candidates

    def score_fn(batch: Tensor) -> Tensor:
        scores = scorer.score(vectors[row_of[batch]], item_vectors)  # [B, I]
        scores[:, excluded] = -math.inf
        return scores

    ranking = evaluate_ranking(
        score_fn,
        users,
        item_vectors.shape[0],
        relevant,
        ks=ks,
        graded=True,
        batch_size=batch_size,
    )
    per_user[f"{prefix}ranking"] = ranking
    metrics.update({f"{prefix}{key}": value for key, value in ranking.summary().items()})
    rated = rated_ndcg(scorer, vectors, row_of, item_vectors, relevant, k, batch_size)
    metrics[f"{prefix}rated_ndcg@{k}"] = float(rated.nanmean()) if rated.numel() else math.nan
    return metrics, per_user
