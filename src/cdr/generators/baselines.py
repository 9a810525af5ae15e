"""Rating-only reference models as generators: ``tgt`` (TGT-only MF) and ``cmf`` (CMF).

``tgt``: the target domain alone. A cold-start user has no target history, so the best a
target-only MF can do is one vector for every such user: the mean target user vector
(learned by MSE), i.e. ranking by the items' mean predicted appeal.
``cmf``: collective MF (Singh & Gordon 2008): one user representation shared by both
domains, so a cold-start user's auxiliary vector is used as their target vector. The
sharing is learned by the cold-start pipeline (``traits.shared_user_space``: its target-space fit
also explains overlapping training users' target ratings from their auxiliary vectors).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.errors import CompositionError
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History


@attrs.frozen
class TargetOnlyConfig(GeneratorConfig):
    kind: str = "tgt"


class TargetOnlyGenerator(GeneratorBase):
    """Every user gets the learned mean target vector ``mean`` [dim]; the condition is unused."""

    def __init__(self, dim: int) -> None:
        # side users' target vectors inform the mean as well
        super().__init__(GeneratorTraits(side_users=True))
        self.mean = nn.Parameter(torch.zeros(dim))
        self.seen: Tensor
        self.register_buffer("seen", torch.zeros(()))

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        """MSE to the mean; in training the mean is also set to the exact running average
        of the targets seen so far (closed form: a few Adam steps would underfit it)."""
        if self.training:
            with torch.no_grad():
                n = target.shape[0]
                self.mean.mul_(self.seen / (self.seen + n)).add_(target.sum(0) / (self.seen + n))
                self.seen += n
        return F.mse_loss(self.mean.expand_as(target), target)

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        return self.mean.expand(condition.shape[0], -1)


@attrs.frozen
class CMFConfig(GeneratorConfig):
    kind: str = "cmf"


class CMFGenerator(GeneratorBase):
    """target = condition (the shared user vector); parameter-free."""

    def __init__(self) -> None:
        super().__init__(GeneratorTraits(shared_user_space=True))

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        return torch.zeros((), device=target.device)

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        return condition


def _build_tgt(config: TargetOnlyConfig, ctx: BuildContext) -> TargetOnlyGenerator:
    return TargetOnlyGenerator(ctx.dim).to(ctx.device)


def _build_cmf(config: CMFConfig, ctx: BuildContext) -> CMFGenerator:
    if ctx.in_dim != ctx.dim:
        raise CompositionError(
            f"cmf shares user vectors: widths must agree ({ctx.in_dim} != {ctx.dim})"
        )
    return CMFGenerator()


tgt_component = Component(
    "tgt", "generators", TargetOnlyConfig, _build_tgt, "TGT-only MF: mean target user vector"
)
cmf_component = Component(
    "cmf", "generators", CMFConfig, _build_cmf, "CMF: user vectors shared across domains"
)
