"""Pure metric functions on torch tensors: rating errors and full-ranking top-k metrics.

Ranking metrics take dense ``scores`` / ``relevance`` ``[num_users, num_items]``; excluded
items carry ``-inf`` scores; means are over users with at least one relevant item. See
``cdr.metrics.ranking`` for the exact definitions and how ties are broken.
"""

from cdr.metrics.ranking import (
    hit_rate_at_k,
    hit_rate_at_k_per_user,
    metrics_from_top_k,
    ndcg_at_k,
    ndcg_at_k_per_user,
    precision_at_k,
    precision_at_k_per_user,
    ranking_metrics_per_user,
    recall_at_k,
    recall_at_k_per_user,
    top_k_items,
)
from cdr.metrics.rating import mae, rmse

__all__ = [
    "hit_rate_at_k",
    "hit_rate_at_k_per_user",
    "mae",
    "metrics_from_top_k",
    "ndcg_at_k",
    "ndcg_at_k_per_user",
    "precision_at_k",
    "precision_at_k_per_user",
    "ranking_metrics_per_user",
    "recall_at_k",
    "recall_at_k_per_user",
    "rmse",
    "top_k_items",
]
