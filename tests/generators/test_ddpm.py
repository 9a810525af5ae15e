"""Property tests of the diffusion math (cdr.generators.ddpm)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.generators.ddpm import (
    NoiseSchedule,
    ddim_step,
    ddpm_step,
    sample,
    timestep_embedding,
)

steps = st.integers(min_value=1, max_value=60)
schedules = st.one_of(
    st.builds(
        NoiseSchedule.linear,
        steps,
        st.floats(1e-5, 1e-3),
        st.floats(1e-3, 0.3),
    ),
    st.builds(NoiseSchedule.cosine, steps),
)
FAST = settings(max_examples=30, deadline=None)


def _f64(schedule: NoiseSchedule) -> NoiseSchedule:
    return schedule.to(torch.float64)


@FAST
@given(schedules)
def test_schedules_are_monotone_and_in_unit_interval(schedule: NoiseSchedule) -> None:
    for name in ("betas", "alphas", "alphas_cumprod"):
        values = getattr(schedule, name)
        assert values.shape == (schedule.num_steps,)
        assert bool(((values > 0) & (values < 1)).all()), name
    abar = schedule.alphas_cumprod
    assert bool((abar[1:] <= abar[:-1]).all())  # abar decreases
    assert bool((schedule.betas[1:] >= schedule.betas[:-1] - 1e-7).all())  # betas grow
    # alphas_cumprod[t] = prod_{s<=t} (1 - betas[s])
    expected = torch.cumprod(1 - schedule.betas.double(), 0)
    assert torch.allclose(abar.double(), expected, rtol=1e-5)


@FAST
@given(schedules, st.data())
def test_closed_form_q_matches_iterated_markov_chain(schedule: NoiseSchedule, data) -> None:
    """q(x_t | x0) of eq. 4 == iterating eq. 3: mean factor and variance of x_t given x0."""
    schedule = _f64(schedule)
    t = data.draw(st.integers(0, schedule.num_steps - 1))
    mean_factor, variance = 1.0, 0.0
    for s in range(t + 1):  # x_s = sqrt(1-beta_s) x_{s-1} + sqrt(beta_s) eps
        b = float(schedule.betas[s])
        mean_factor *= math.sqrt(1 - b)
        variance = (1 - b) * variance + b
    x0 = torch.tensor([[1.0]], dtype=torch.float64)
    tt = torch.tensor([t])
    assert float(schedule.q_sample(x0, tt, torch.zeros_like(x0))) == pytest.approx(
        mean_factor, rel=1e-5
    )
    # the noise coefficient squared is the variance
    noise_coef = float(schedule.q_sample(torch.zeros_like(x0), tt, torch.ones_like(x0)))
    assert noise_coef**2 == pytest.approx(variance, rel=1e-4, abs=1e-9)


@FAST
@given(schedules, st.data())
def test_posterior_matches_gaussian_product(schedule: NoiseSchedule, data) -> None:
    """q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0): precision-weighted product."""
    schedule = _f64(schedule)
    t = data.draw(st.integers(1, schedule.num_steps - 1)) if schedule.num_steps > 1 else 0
    x0 = torch.tensor([[data.draw(st.floats(-3, 3))]], dtype=torch.float64)
    xt = torch.tensor([[data.draw(st.floats(-3, 3))]], dtype=torch.float64)
    mean, var = schedule.posterior_mean_variance(x0, xt, torch.tensor([t]))
    if t == 0:
        assert float(var) == 0.0
        assert torch.allclose(mean, x0)
        return
    b, a = float(schedule.betas[t]), 1 - float(schedule.betas[t])
    abar_prev = float(torch.prod(1 - schedule.betas[:t].double()))
    # as a function of x_{t-1}: x_t | x_{t-1} ~ N(sqrt(a) x_{t-1}, b) has precision a / b
    prec_lik, mean_lik = a / b, float(xt) / math.sqrt(a)
    prec_prior, mean_prior = 1 / (1 - abar_prev), math.sqrt(abar_prev) * float(x0)
    var_expected = 1 / (prec_lik + prec_prior)
    mean_expected = var_expected * (prec_lik * mean_lik + prec_prior * mean_prior)
    assert float(var) == pytest.approx(var_expected, rel=1e-4)
    assert float(mean) == pytest.approx(mean_expected, rel=1e-4, abs=1e-6)


def test_posterior_at_t0_is_x0_with_zero_variance() -> None:
    schedule = NoiseSchedule.linear(10)
    x0, xt = torch.randn(5, 3), torch.randn(5, 3)
    mean, var = schedule.posterior_mean_variance(x0, xt, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(mean, x0) and bool((var == 0).all())


@FAST
@given(schedules, st.sampled_from(["ddpm", "ddim"]), st.integers(0, 2**31))
def test_perfect_x0_predictor_recovers_x0(schedule: NoiseSchedule, sampler, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(7, 4, generator=gen)
    x_start = torch.randn(7, 4, generator=gen)
    out = sample(schedule, lambda x, t, c: x0, x_start, None, sampler=sampler, generator=gen)
    assert torch.allclose(out, x0, atol=1e-5)


def test_perfect_epsilon_predictor_recovers_x0_with_ddim() -> None:
    schedule = NoiseSchedule.cosine(10).to(torch.float64)
    x0 = torch.randn(6, 3, dtype=torch.float64)
    noise = torch.randn(6, 3, dtype=torch.float64)
    t = torch.full((6,), 9)
    x_t = schedule.q_sample(x0, t, noise)
    # the exact eps of x_t w.r.t. x0 at each step (deterministic DDIM path keeps it constant)
    step = ddim_step(schedule, noise, t, x_t, prediction="epsilon")
    assert torch.allclose(step.pred_original_sample, x0)


def _posterior_reference(
    betas: list[float], t: int, x0: torch.Tensor, x_t: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """q(x_{t-1} | x_t, x0) in float64 straight from the betas (Ho et al. 2020, eq. 6-7):
    mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) /
    (1 - abar_t) x_t, variance = (1 - abar_{t-1}) / (1 - abar_t) beta_t, with abar_{-1} = 1."""
    abar = math.prod(1.0 - b for b in betas[: t + 1])
    abar_prev = math.prod(1.0 - b for b in betas[:t])  # empty product at t = 0: 1
    beta_t, alpha_t = betas[t], 1.0 - betas[t]
    coef_x0 = math.sqrt(abar_prev) * beta_t / (1.0 - abar)
    coef_xt = math.sqrt(alpha_t) * (1.0 - abar_prev) / (1.0 - abar)
    return coef_x0 * x0 + coef_xt * x_t, (1.0 - abar_prev) / (1.0 - abar) * beta_t


BETAS = {
    "linear": [1e-4 + (0.02 - 1e-4) * i / 9 for i in range(10)],  # MuSiC's schedule, T = 10
    "steep": [0.05, 0.1, 0.2, 0.3, 0.45, 0.6],
}


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
@pytest.mark.parametrize("name", list(BETAS))
def test_ddpm_step_matches_float64_closed_form(name: str, prediction: str) -> None:
    """x_{t-1} = posterior mean + sqrt(posterior variance) * noise, per-sample t, against
    eq. 6-7 evaluated here in float64 from the betas (not through posterior_mean_variance)."""
    betas = BETAS[name]
    schedule = NoiseSchedule(torch.tensor(betas, dtype=torch.float64)).to(torch.float64)
    gen = torch.Generator().manual_seed(7)
    steps = len(betas)
    t = torch.tensor([0, 1, steps // 2, steps - 2, steps - 1])
    output, x_t, noise = (torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    out = ddpm_step(schedule, output, t, x_t, noise, prediction=prediction)  # type: ignore[arg-type]
    for row, step in enumerate(t.tolist()):
        abar = math.prod(1.0 - b for b in betas[: step + 1])
        x0 = (
            output[row]
            if prediction == "x0"  # eq. 4 solved for x0: (x_t - sqrt(1 - abar) eps) / sqrt(abar)
            else (x_t[row] - math.sqrt(1.0 - abar) * output[row]) / math.sqrt(abar)
        )
        mean, variance = _posterior_reference(betas, step, x0, x_t[row])
        expected = mean + math.sqrt(variance) * noise[row]
        # the schedule's buffers are float32-rounded: agreement to ~1e-7 relative
        torch.testing.assert_close(out.prev_sample[row], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out.pred_original_sample[row], x0, rtol=1e-5, atol=1e-6)
    # t = 0: the mean is x0 and the variance 0, whatever the noise
    torch.testing.assert_close(out.prev_sample[0], out.pred_original_sample[0])
    if prediction == "x0":
        assert out.pred_original_sample is output


@pytest.mark.parametrize("name", list(BETAS))
def test_ddim_step_matches_float64_closed_form(name: str) -> None:
    """eta = 0 DDIM (Song et al. eq. 12): sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1}) eps_hat,
    eps_hat = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), in float64 from the betas."""
    betas = BETAS[name]
    schedule = NoiseSchedule(torch.tensor(betas, dtype=torch.float64)).to(torch.float64)
    gen = torch.Generator().manual_seed(8)
    t = torch.tensor([0, 1, len(betas) - 1])
    x0, x_t = (torch.randn(3, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    out = ddim_step(schedule, x0, t, x_t)
    for row, step in enumerate(t.tolist()):
        abar = math.prod(1.0 - b for b in betas[: step + 1])
        abar_prev = math.prod(1.0 - b for b in betas[:step])
        eps = (x_t[row] - math.sqrt(abar) * x0[row]) / math.sqrt(1.0 - abar)
        expected = math.sqrt(abar_prev) * x0[row] + math.sqrt(1.0 - abar_prev) * eps
        # looser than the DDPM step: ddim_step forms 1 - abar_{t-1} from the float32-rounded
        # abar_{t-1} (~1e-4 relative error where abar_{t-1} ~ 1, the linear schedule's start)
        torch.testing.assert_close(out.prev_sample[row], expected, rtol=1e-4, atol=1e-4)


def test_paper_schedule_terminal_snr_is_high_and_cosine_fixes_it() -> None:
    linear, cosine = NoiseSchedule.linear(10), NoiseSchedule.cosine(10)
    last = torch.tensor([9])
    assert float(linear.alphas_cumprod[-1]) == pytest.approx(0.9037, abs=1e-3)
    assert float(linear.snr(last)) > 9.0
    assert float(cosine.snr(last)) < 1e-3


@FAST
@given(st.integers(2, 64).map(lambda h: 2 * h), st.lists(st.integers(0, 1000), min_size=1))
def test_timestep_embedding_eq7(dim: int, ts: list[int]) -> None:
    t = torch.tensor(ts)
    emb = timestep_embedding(t, dim)
    assert emb.shape == (len(ts), dim)
    assert bool((emb.abs() <= 1).all())
    half = dim // 2
    for row, tv in enumerate(ts):
        for i in (0, half - 1):
            omega = math.exp(-math.log(10000) * i / (half - 1))
            assert float(emb[row, i]) == pytest.approx(math.sin(tv * omega), abs=1e-3)
            assert float(emb[row, half + i]) == pytest.approx(math.cos(tv * omega), abs=1e-3)


def test_timestep_embedding_rejects_odd_dim() -> None:
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(torch.tensor([1]), 7)


def test_schedule_rejects_bad_betas() -> None:
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="num_steps"):
        NoiseSchedule.linear(0)


def test_buffers_move_with_module() -> None:
    schedule = NoiseSchedule.linear(5)
    names = {n for n, _ in schedule.named_buffers()}
    assert {"betas", "alphas", "alphas_cumprod", "posterior_variance"} <= names
    assert schedule.to(torch.float64).betas.dtype == torch.float64
