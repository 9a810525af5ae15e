"""Rating-prediction evaluation (MuSiC protocol): pooled MAE/RMSE and per-user errors."""

from __future__ import annotations

import torch
from torch import Tensor

from cdr.evaluation.ranking import RankingResult
from cdr.metrics.rating import mae, rmse


def evaluate_rating(pred: Tensor, target: Tensor) -> dict[str, float]:
    """{"mae", "rmse"} pooled over all interactions: pred, target [E]."""
    return {"mae": mae(pred, target), "rmse": rmse(pred, target)}


def rating_per_user(pred: Tensor, target: Tensor, users: Tensor) -> RankingResult:
    """Per-user "mae" and "rmse" over each user's interactions (for significance tests).

    pred, target, users: [E] aligned; result users are the sorted unique ``users``. Note the
    mean of per-user MAE weighs users equally, unlike the pooled :func:`evaluate_rating`.
    """
    if not (pred.shape == target.shape == users.shape) or pred.dim() != 1:
        raise ValueError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and users "
            f"{tuple(users.shape)} must be equal 1-D shapes"
        )
    err = pred.detach().cpu().to(torch.float64) - target.detach().cpu().to(torch.float64)
    uniq, row = torch.unique(users.cpu(), return_inverse=True)  # [U], [E]
    count = torch.bincount(row, minlength=uniq.numel()).to(torch.float64)  # [U]
    abs_sum = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, row, err.abs())
    sq_sum = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, row, err.square())
    return RankingResult(uniq, {"mae": abs_sum / count, "rmse": (sq_sum / count).sqrt()})
