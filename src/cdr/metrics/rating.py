"""Rating-prediction errors, pooled over all test interactions (MuSiC section 4.1 metrics)."""

from __future__ import annotations

import torch
from torch import Tensor


def _errors(pred: Tensor, target: Tensor) -> Tensor:
    """[E] float64 prediction errors ``pred - target``; checks shapes and emptiness."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.numel() == 0:
        raise ValueError("no interactions to evaluate (pred and target are empty)")
    return (
        pred.detach().to(torch.float64).flatten()
        - target.detach().to(device=pred.device, dtype=torch.float64).flatten()
    )


def mae(pred: Tensor, target: Tensor) -> float:
    """Mean absolute error ``mean_e |pred_e - target_e|`` over all interactions e (pooled)."""
    return float(_errors(pred, target).abs().mean())


def rmse(pred: Tensor, target: Tensor) -> float:
    """Root mean squared error ``sqrt(mean_e (pred_e - target_e)^2)`` over all interactions."""
    return float(_errors(pred, target).square().mean().sqrt())
