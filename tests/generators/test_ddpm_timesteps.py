"""The DDPM training loss draws every timestep 0..T-1, the last one (where sampling
starts) included, uniformly."""

from __future__ import annotations

import torch

from cdr.components import BuildContext
from cdr.generators.ddpm_generator import DDPMConfig, component


def test_the_loss_samples_every_timestep_uniformly() -> None:
    generator = component.build(DDPMConfig(steps=5), BuildContext(dim=4, in_dim=4))
    drawn: list[torch.Tensor] = []
    q_sample = generator.schedule.q_sample

    def record(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        drawn.append(t.clone())
        return q_sample(x0, t, noise)

    generator.schedule.q_sample = record  # type: ignore[method-assign]
    torch.manual_seed(0)
    for _ in range(20):
        generator.loss(torch.randn(500, 4), torch.randn(500, 4))
    counts = torch.bincount(torch.cat(drawn), minlength=5)
    assert counts.numel() == 5 and int(counts.min()) > 0
    # 10,000 draws: each step within 10% of 2,000 (a binomial std is ~40)
    assert (counts - 2000).abs().max() < 200
