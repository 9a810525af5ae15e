"""Early stopping on a validation metric, keeping the best model state in memory."""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn


class EarlyStopping:
    """Track a validation metric; ``step`` returns True when training should stop.

    mode "max" (NDCG) or "min" (RMSE). The best ``state_dict`` is deep-copied so the
    caller can restore it with ``restore(model)`` once training ends.
    """

    def __init__(self, patience: int, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode: {mode!r} is not 'max' or 'min'")
        self.patience, self.mode = patience, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.best_state: dict[str, Any] | None = None

    def improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def step(self, value: float, epoch: int, model: nn.Module | None = None) -> bool:
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_epochs += 1
        return self.bad_epochs > self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
