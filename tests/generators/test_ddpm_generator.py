"""The ``ddpm`` Generator component: config, build, loss, generation, learning."""

from __future__ import annotations

import pytest
import torch

from cdr.components import BuildContext
from cdr.generators.ddpm_generator import DDPMConfig, component


def _build(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return component.build(DDPMConfig(**kw), BuildContext(dim=4, in_dim=6))


def test_loss_and_generate_shapes_with_and_without_condition() -> None:
    gen = _build(widths=(16, 8), time_dim=8)
    target, cond = torch.randn(10, 4), torch.randn(10, 6)
    assert gen.loss(target, cond).ndim == 0
    assert gen.loss(target, None).ndim == 0
    assert gen.generate(cond, seed=1).shape == (10, 4)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_generation_is_seeded(sampler: str) -> None:
    gen = _build(sampler=sampler, widths=(16,), time_dim=8).eval()
    cond = torch.randn(5, 6)
    with torch.no_grad():
        a, b = gen.generate(cond, seed=3), gen.generate(cond, seed=3)
        c = gen.generate(cond, seed=4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # the start noise x_{T-1} differs


@pytest.mark.parametrize("denoiser", ["unet", "mlp"])
def test_learns_a_conditional_map(denoiser: str) -> None:
    """target = first 4 dims of the condition: after training, generation recovers it."""
    gen = _build(denoiser=denoiser, widths=(64, 32), schedule="cosine", dropout=0.0)
    gen.train()
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        cond = torch.randn(128, 6, generator=g)
        loss = gen.loss(cond[:, :4], cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gen.eval()
    cond = torch.randn(256, 6, generator=g)
    with torch.no_grad():
        err = (gen.generate(cond, seed=0) - cond[:, :4]).square().mean()
    assert float(err) < 0.15  # the trivial predictor (zeros) has error ~1


def test_config_validation_names_fields() -> None:
    with pytest.raises(ValueError, match="steps"):
        DDPMConfig(steps=0)
    with pytest.raises(ValueError, match="schedule"):
        DDPMConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="widths"):
        DDPMConfig(widths=())
    with pytest.raises(ValueError, match="joint_weight"):
        DDPMConfig(joint_weight=1.5)


def test_chunked_and_bfloat16_sampling_agree_with_float32() -> None:
    from cdr.components import BuildContext
    from cdr.generators.ddpm_generator import DDPMConfig, component

    cond = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))

    def build(**kw: object) -> torch.nn.Module:
        torch.manual_seed(0)
        gen = component.build(
            DDPMConfig(widths=(32, 16), sampler="ddim", **kw),  # type: ignore[arg-type]
            BuildContext(dim=8, in_dim=8),
        )
        return gen.eval()

    whole = build(sample_chunk=1000).generate(cond, seed=3)
    chunked = build(sample_chunk=64).generate(cond, seed=3)
    assert torch.allclose(whole, chunked, atol=1e-5)  # same x_T draws in order; DDIM adds no noise
    fast = build(sample_chunk=64, sample_dtype="bfloat16").generate(cond, seed=3)
    assert fast.dtype == torch.float32
    assert torch.allclose(fast, chunked, atol=0.1)
    assert torch.equal(chunked, build(sample_chunk=64).generate(cond, seed=3))
