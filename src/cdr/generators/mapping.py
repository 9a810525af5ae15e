"""``mapping``: EMCDR (Man et al. 2017): an MLP mapping auxiliary to target user vectors.

Trained on overlapping users with the mapping loss ||g(f^A) - f^T||^2; side users (no
auxiliary vector) carry no signal for it, so their loss is zero.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.config.validators import in_range, positive
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History


@attrs.frozen
class MappingConfig(GeneratorConfig):
    """hidden: width of the mapping MLP; joint_weight: lambda of eq. 13 in the cold-start
    pipeline (1 = pure mapping loss, as EMCDR)."""

    kind: str = "mapping"
    hidden: int = attrs.field(default=64, validator=positive)
    layers: int = attrs.field(default=2, validator=positive)
    dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 1.0, high_open=True))
    joint_weight: float = attrs.field(default=1.0, validator=in_range(0.0, 1.0))


class MappingGenerator(GeneratorBase):
    """f^T_hat = MLP(f^A): [B, in_dim] -> [B, dim] (tanh hidden layers, linear output)."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        hidden: int,
        layers: int,
        dropout: float,
        joint_weight: float = 1.0,
    ) -> None:
        super().__init__(GeneratorTraits(joint_weight=joint_weight))
        mods: list[nn.Module] = []
        width = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(width, hidden), nn.Tanh(), nn.Dropout(dropout)]
            width = hidden
        mods.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*mods)

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        if condition is None:
            return torch.zeros((), device=target.device)
        return F.mse_loss(self.net(condition), target)

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        out: Tensor = self.net(condition)
        return out


def _build(config: MappingConfig, ctx: BuildContext) -> MappingGenerator:
    gen = MappingGenerator(
        ctx.in_dim, ctx.dim, config.hidden, config.layers, config.dropout, config.joint_weight
    )
    return gen.to(ctx.device)


component = Component(
    "mapping", "generators", MappingConfig, _build, "EMCDR: MLP mapping auxiliary -> target"
)
