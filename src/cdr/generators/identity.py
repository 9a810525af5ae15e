"""``identity``: the auxiliary vector is used as the target vector (MuSiC's "w/o diffusion").

Needs no training; its loss is a constant zero so pipelines can treat it like any generator.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.errors import CompositionError
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History


@attrs.frozen
class IdentityConfig(GeneratorConfig):
    kind: str = "identity"


class IdentityGenerator(GeneratorBase):
    """target = condition. Requires equal auxiliary and target widths, and one user space
    for both domains (``shared_user_space``): otherwise an auxiliary vector is no target
    vector."""

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


def _build(config: IdentityConfig, ctx: BuildContext) -> IdentityGenerator:
    if ctx.in_dim != ctx.dim:
        raise CompositionError(
            "identity generator needs equal auxiliary and target widths, "
            f"got {ctx.in_dim} != {ctx.dim}"
        )
    return IdentityGenerator()


component = Component(
    "identity", "generators", IdentityConfig, _build, "auxiliary vector as target (no diffusion)"
)
