"""``ptupcdr``: PTUPCDR (Zhu et al. 2022): a meta-network gives each user a personal bridge.

A characteristic encoder attends over the user's auxiliary-domain item vectors
(a_j = softmax_j(h(e_j)), p_u = sum_j a_j e_j); the meta-network turns p_u into a
personal linear bridge W_u [in_dim, dim]; f^T_hat = f^A W_u. The history is the
``history`` argument of the Generator interface (a :class:`cdr.interfaces.History`), which
pipelines supply because ``traits.uses_history`` is True; without it p_u falls back to the
user's own auxiliary vector. PTUPCDR trains task-oriented (on ratings): ``joint_weight`` 0
by default.
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
class PTUPCDRConfig(GeneratorConfig):
    kind: str = "ptupcdr"
    hidden: int = attrs.field(default=64, validator=positive)
    joint_weight: float = attrs.field(default=0.0, validator=in_range(0.0, 1.0))


class PTUPCDRGenerator(GeneratorBase):
    def __init__(self, in_dim: int, dim: int, hidden: int, joint_weight: float = 0.0) -> None:
        # servable=False: a served cold-start user has a fold-in vector, not a history
        super().__init__(
            GeneratorTraits(uses_history=True, joint_weight=joint_weight, servable=False)
        )
        self.in_dim, self.dim = in_dim, dim
        self.attention = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        last = nn.Linear(hidden, in_dim * dim)
        # start at the identity bridge (W_u = I for every user): a stable first step
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.eye(in_dim, dim).flatten())
        self.meta = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), last)

    def characteristic(self, condition: Tensor, history: History | None) -> Tensor:
        """p_u [B, in_dim]: attention-pooled history (or the auxiliary vector itself)."""
        if history is None:
            return condition
        logits = self.attention(history.items).squeeze(-1)  # [B, L]
        logits = logits.masked_fill(~history.mask, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # users without history: 0
        return (weights.unsqueeze(-1) * history.items).sum(1)

    def bridge(self, condition: Tensor, history: History | None = None) -> Tensor:
        """f^A [B, in_dim] -> f^A W_u [B, dim] with W_u = meta(p_u) [B, in_dim, dim]."""
        w_u = self.meta(self.characteristic(condition, history))
        w_u = w_u.view(-1, self.in_dim, self.dim)
        return torch.bmm(condition.unsqueeze(1), w_u).squeeze(1)

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        if condition is None:
            return torch.zeros((), device=target.device)
        return F.mse_loss(self.bridge(condition, history), target)

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        return self.bridge(condition, history)


def _build(config: PTUPCDRConfig, ctx: BuildContext) -> PTUPCDRGenerator:
    generator = PTUPCDRGenerator(ctx.in_dim, ctx.dim, config.hidden, config.joint_weight)
    return generator.to(ctx.device)


component = Component(
    "ptupcdr",
    "generators",
    PTUPCDRConfig,
    _build,
    "PTUPCDR: meta-network personalised bridge over the auxiliary history",
)
