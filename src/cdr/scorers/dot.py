"""``dot``: score = <user, item> (MuSiC eq. 8; the LightGCN/INMO ranking score)."""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from cdr.components import BuildContext, Component, ScorerConfig


@attrs.frozen
class DotConfig(ScorerConfig):
    kind: str = "dot"


class DotScorer(nn.Module):
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """users [B, D], items [I, D] -> [B, I]."""
        return users @ items.T

    def rate(self, users: Tensor, items: Tensor) -> Tensor:
        """users [E, D], items [E, D] -> [E]."""
        return (users * items).sum(-1)


def _build(config: DotConfig, ctx: BuildContext) -> DotScorer:
    return DotScorer()


component = Component("dot", "scorers", DotConfig, _build, "inner product (eq. 8)")
