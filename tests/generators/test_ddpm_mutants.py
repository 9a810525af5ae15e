"""Tests that kill surviving mutants of cdr.generators.ddpm (docs/testing.md): schedules
against their closed forms in float64, the error messages, the reverse chain's step order
and noise draws, and the eps/x0 conversions."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cdr.generators.ddpm import (
    NoiseSchedule,
    ddim_step,
    ddpm_step,
    sample,
    timestep_embedding,
)


def _cosine_betas(steps: int, s: float = 0.008, max_beta: float = 0.999) -> list[float]:
    """Improved DDPM eq. 17 in float64: abar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) /
    (1 + s)) pi/2); beta_t = 1 - abar(t+1) / abar(t), clipped to [1e-8, max_beta]."""

    def f(t: int) -> float:
        return math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2

    return [min(max(1 - f(t + 1) / f(t), 1e-8), max_beta) for t in range(steps)]


@pytest.mark.parametrize("steps", [1, 2, 10, 50])
def test_cosine_schedule_matches_closed_form(steps: int) -> None:
    expected = torch.tensor(_cosine_betas(steps), dtype=torch.float64)
    torch.testing.assert_close(
        NoiseSchedule.cosine(steps).betas.double(), expected, rtol=1e-6, atol=1e-9
    )
    if steps == 1:  # abar(T) = cos^2(pi/2) = 0: beta clipped at max_beta
        assert float(NoiseSchedule.cosine(1).betas[0]) == pytest.approx(0.999, abs=1e-7)
        assert float(NoiseSchedule.cosine(1, max_beta=0.9).betas[0]) == pytest.approx(0.9)
    custom = NoiseSchedule.cosine(steps, s=0.1).betas.double()
    torch.testing.assert_close(
        custom, torch.tensor(_cosine_betas(steps, s=0.1), dtype=torch.float64), rtol=1e-6,
        atol=1e-9,
    )


def test_linear_schedule_defaults_and_arguments() -> None:
    torch.testing.assert_close(
        NoiseSchedule.linear(5).betas.double(),
        torch.tensor([1e-4 + (0.02 - 1e-4) * i / 4 for i in range(5)], dtype=torch.float64),
    )
    torch.testing.assert_close(
        NoiseSchedule.linear(3, 0.1, 0.3).betas.double(),
        torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
    )
    assert NoiseSchedule.linear(1).betas.tolist() == pytest.approx([1e-4])


def test_every_buffer_matches_its_closed_form() -> None:
    betas = [0.05, 0.1, 0.2, 0.4]
    schedule = NoiseSchedule(torch.tensor(betas))
    abar = [math.prod(1 - b for b in betas[: t + 1]) for t in range(4)]
    abar_prev = [1.0, *abar[:-1]]
    expected = {
        "betas": betas,
        "alphas": [1 - b for b in betas],
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": [math.sqrt(a) for a in abar],
        "sqrt_one_minus_alphas_cumprod": [math.sqrt(1 - a) for a in abar],
        "posterior_variance": [
            b * (1 - p) / (1 - a) for b, p, a in zip(betas, abar_prev, abar, strict=True)
        ],
        "posterior_mean_coef_x0": [
            math.sqrt(p) * b / (1 - a) for b, p, a in zip(betas, abar_prev, abar, strict=True)
        ],
        "posterior_mean_coef_xt": [
            math.sqrt(1 - b) * (1 - p) / (1 - a)
            for b, p, a in zip(betas, abar_prev, abar, strict=True)
        ],
    }
    for name, values in expected.items():
        buffer = getattr(schedule, name)
        assert buffer.dtype == torch.float32, name
        torch.testing.assert_close(buffer.double(), torch.tensor(values, dtype=torch.float64),
                                   rtol=1e-6, atol=1e-8, msg=name)
    assert schedule.num_steps == 4
    t = torch.tensor([0, 3])
    torch.testing.assert_close(
        schedule.snr(t).double(),
        torch.tensor([abar[0] / (1 - abar[0]), abar[3] / (1 - abar[3])], dtype=torch.float64),
        rtol=1e-5,
        atol=0.0,
    )


def test_epsilon_and_x0_conversions_are_eq_4() -> None:
    schedule = NoiseSchedule(torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)).double()
    gen = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(3, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0, 1, 2])
    abar = torch.tensor([0.9, 0.9 * 0.7, 0.9 * 0.7 * 0.5], dtype=torch.float64)[:, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    torch.testing.assert_close(schedule.q_sample(x0, t, eps), x_t, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(
        schedule.predict_x0_from_epsilon(x_t, t, eps), x0, rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        schedule.predict_epsilon_from_x0(x_t, t, x0), eps, rtol=1e-5, atol=1e-6
    )
    # an epsilon-predicting DDIM step recovers x0 exactly like an x0-predicting one
    by_eps = ddim_step(schedule, eps, t, x_t, prediction="epsilon")
    by_x0 = ddim_step(schedule, x0, t, x_t, prediction="x0")
    torch.testing.assert_close(by_eps.pred_original_sample, x0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_eps.prev_sample, by_x0.prev_sample, rtol=1e-5, atol=1e-6)


def test_error_messages() -> None:
    def raises(message: str) -> pytest.RaisesExc[ValueError]:
        return pytest.raises(ValueError, match=f"^{re.escape(message)}$")

    with raises("betas: expected a non-empty 1-D tensor"):
        NoiseSchedule(torch.tensor([]))
    with raises("betas: expected a non-empty 1-D tensor"):
        NoiseSchedule(torch.full((2, 2), 0.1))
    for bad in (0.0, 1.0, -0.1):
        with raises("betas: every beta_t must lie in (0, 1)"):
            NoiseSchedule(torch.tensor([0.1, bad]))
    with raises("num_steps: 0 must be >= 1"):
        NoiseSchedule.linear(0)
    with raises("num_steps: 0 must be >= 1"):
        NoiseSchedule.cosine(0)
    for dim in (2, 7):
        with raises(f"dim: {dim} must be even and >= 4"):
            timestep_embedding(torch.tensor([1]), dim)


def test_timestep_embedding_smallest_dim_and_dtype() -> None:
    emb = timestep_embedding(torch.tensor([0, 3], dtype=torch.long), 4)  # omega = [1, 1e-4]
    assert emb.dtype == torch.float32 and emb.shape == (2, 4)
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 1.0], [math.sin(3), math.sin(3e-4), math.cos(3), math.cos(3e-4)]]
    )
    torch.testing.assert_close(emb, expected)
    # the base 10000 itself: at t = 1e5 the second frequency's angle is exactly 10
    far = timestep_embedding(torch.tensor([100_000]), 4)
    torch.testing.assert_close(far[0, [1, 3]], torch.tensor([math.sin(10.0), math.cos(10.0)]),
                               atol=1e-4, rtol=0.0)


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("start_step", [None, 2])
def test_sample_is_the_chain_of_steps(
    sampler: str, start_step: int | None, prediction: str
) -> None:
    """sample() == the steps T-1 (or start_step) .. 0 applied by hand, with the noise drawn
    from the generator in that order (DDPM), and the denoiser sees each t once."""
    schedule = NoiseSchedule.cosine(5)
    weight = torch.tensor([[0.5, -0.2], [0.1, 0.9]])
    seen: list[list[int]] = []

    def denoise(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        seen.append(t.tolist())
        assert c is not None
        return torch.tanh(x @ weight + c + 0.1 * t[:, None])

    cond = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    x_start = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    out = sample(
        schedule, denoise, x_start, cond, sampler=sampler,  # type: ignore[arg-type]
        prediction=prediction,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(3), start_step=start_step,
    )
    first = 4 if start_step is None else start_step
    assert seen == [[step] * 3 for step in range(first, -1, -1)]
    gen = torch.Generator().manual_seed(3)
    x = x_start
    for step in range(first, -1, -1):
        t = torch.full((3,), step)
        output = torch.tanh(x @ weight + cond + 0.1 * t[:, None])
        if sampler == "ddim":
            x = ddim_step(schedule, output, t, x, prediction).prev_sample  # type: ignore[arg-type]
        else:
            noise = torch.randn(3, 2, generator=gen)
            x = ddpm_step(schedule, output, t, x, noise, prediction).prev_sample  # type: ignore[arg-type]
    torch.testing.assert_close(out, x)
    if sampler == "ddpm" and prediction == "x0":  # the noise matters: another seed, another x0
        other = sample(schedule, denoise, x_start, cond, generator=torch.Generator().manual_seed(4))
        assert not torch.allclose(other, out)


def test_buffers_follow_dtype_and_stay_buffers() -> None:
    schedule = NoiseSchedule.linear(3)
    names = {n for n, _ in schedule.named_buffers()}
    assert names == {
        "betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "posterior_variance", "posterior_mean_coef_x0",
        "posterior_mean_coef_xt",
    }
    assert list(schedule.parameters()) == []
