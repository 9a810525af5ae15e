"""An affine read-out of another scorer: ``a * s(u, v) + b``.

A BPR-trained space ranks but is not on the rating scale; the composed pipelines fit
(a, b) by least squares on training ratings (``calibrate``) and score through this wrapper,
so ratings and rankings both go through the ``Scorer`` interface. For a > 0 the ranking is
the inner scorer's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cdr.data.records import Interactions
from cdr.interfaces import Scorer


class CalibratedScorer:
    """``score``/``rate`` of ``inner`` mapped through ``a * x + b``."""

    def __init__(self, inner: Scorer, a: float, b: float) -> None:
        self.inner, self.a, self.b = inner, a, b

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """users [B, D], items [I, D] -> [B, I]."""
        return self.a * self.inner.score(users, items) + self.b

    def rate(self, users: Tensor, items: Tensor) -> Tensor:
        """users [E, D], items [E, D] -> [E]."""
        return self.a * self.inner.rate(users, items) + self.b


def calibrate(
    scorer: Scorer, users: Tensor, items: Tensor, ratings: Interactions
) -> tuple[float, float]:
    """Least-squares (a, b) with ``a * s(u, v) + b ~= rating`` over ``ratings``;
    users [U, D], items [I, D]."""
    x = scorer.rate(users[ratings.user], items[ratings.item]).double()
    design = torch.stack([x, torch.ones_like(x)], 1)
    solution = torch.linalg.lstsq(design, ratings.rating.double()[:, None]).solution
    return float(solution[0]), float(solution[1])
