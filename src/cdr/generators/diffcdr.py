"""``diffcdr``: DiffCDR-style generator (Xie et al. 2024): a noise-predicting denoiser whose
reverse chain starts from the noised condition x_{T-1} = q(f^A, T-1) instead of pure noise.

Needs equal auxiliary and target widths (the condition is a point of the target space).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.config.validators import in_range, one_of, positive
from cdr.errors import CompositionError
from cdr.generators.ddpm import NoiseSchedule
from cdr.generators.ddpm_generator import DiffusionGenerator
from cdr.generators.unet import MLPDenoiser
from cdr.interfaces import GeneratorTraits


@attrs.frozen
class DiffCDRConfig(GeneratorConfig):
    kind: str = "diffcdr"
    steps: int = attrs.field(default=10, validator=positive)
    schedule: str = attrs.field(default="linear", validator=one_of(("linear", "cosine")))
    hidden: int = attrs.field(default=128, validator=positive)
    time_dim: int = attrs.field(default=32, validator=positive)
    joint_weight: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0))


class DiffCDRGenerator(DiffusionGenerator):
    def initial_sample(self, condition: Tensor, generator: torch.Generator | None) -> Tensor:
        """x_{T-1} = sqrt(abar) f^A + sqrt(1 - abar) eps (eq. 4 applied to the condition)."""
        noise = torch.randn(condition.shape, generator=generator, device=condition.device)
        last = torch.full(
            (condition.shape[0],), self.schedule.num_steps - 1, device=condition.device
        )
        return self.schedule.q_sample(condition, last, noise)


def _build(config: DiffCDRConfig, ctx: BuildContext) -> DiffCDRGenerator:
    if ctx.in_dim != ctx.dim:
        raise CompositionError(
            f"diffcdr starts sampling from the condition: widths must agree ({ctx.in_dim} != "
            f"{ctx.dim})"
        )
    schedule = (
        NoiseSchedule.cosine(config.steps)
        if config.schedule == "cosine"
        else NoiseSchedule.linear(config.steps)
    )
    denoiser = MLPDenoiser(ctx.dim, ctx.in_dim, config.hidden, 2, config.time_dim)
    # sampling starts from the noised condition: it must be a point of the target space
    traits = GeneratorTraits(joint_weight=config.joint_weight, shared_user_space=True)
    generator = DiffCDRGenerator(schedule, denoiser, ctx.dim, prediction="epsilon", traits=traits)
    return generator.to(ctx.device)


component = Component(
    "diffcdr",
    "generators",
    DiffCDRConfig,
    _build,
    "DiffCDR-style: noise-predicting denoiser, sampling starts from the condition",
)
