"""DDPM over user vectors: noise schedule, forward process, samplers (MuSiC section 3.3).

Notation follows the MuSiC paper and DDPM (Ho et al. 2020): ``betas`` (beta_t), ``alphas``
(alpha_t = 1 - beta_t), ``alphas_cumprod`` (alpha-bar_t = prod_{s<=t} alpha_s). Steps are
0-based: t in 0..T-1, so the paper's step t = 1..T is our index t-1. Every function takes
per-sample timesteps ``t: LongTensor[B]``. The denoiser predicts x0 (eq. 10), so the
reverse mean is the posterior mean of q(x_{t-1} | x_t, x0) at x0 = f_theta(x_t, t, f_con),
which is eq. 6 rewritten for an x0-predicting network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

#: (x_t [B, D], t [B], condition [B, C] | None) -> predicted x0 [B, D] (or epsilon).
Denoise = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _per_sample(values: Tensor, t: Tensor) -> Tensor:
    """values [T] gathered at t [B] -> [B, 1] (broadcasts over the vector dim)."""
    return values[t].unsqueeze(-1)


class NoiseSchedule(nn.Module):
    """The variance schedule beta_0..beta_{T-1} and every quantity derived from it.

    Built with one constructor per schedule: ``NoiseSchedule.linear`` (the paper's, eq. 3)
    or ``NoiseSchedule.cosine`` (Nichol & Dhariwal 2021), whose alpha-bar at T-1 is close to
    0 even for T = 10, so sampling from pure noise matches training at the last step.
    All tensors are registered buffers: ``.to(device)`` moves them.
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    posterior_variance: Tensor
    posterior_mean_coef_x0: Tensor
    posterior_mean_coef_xt: Tensor

    def __init__(self, betas: Tensor) -> None:
        super().__init__()
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError("betas: expected a non-empty 1-D tensor")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas: every beta_t must lie in (0, 1)")
        alphas = 1.0 - betas  # alpha_t = 1 - beta_t (eq. 4)
        alphas_cumprod = torch.cumprod(alphas, 0)  # alpha-bar_t = prod_{s<=t} alpha_s
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        # Posterior q(x_{t-1} | x_t, x0) = N(coef_x0 * x0 + coef_xt * x_t, variance)
        # (DDPM eq. 6-7): variance = beta_t (1 - abar_{t-1}) / (1 - abar_t),
        # coef_x0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
        # coef_xt = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t).
        # At t = 0, abar_{-1} = 1: variance 0, coef_x0 1, coef_xt 0 (mean = x0).
        one_minus = 1.0 - alphas_cumprod
        buffers = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            # 1 - abar_t computed in float64 before rounding: exact even when abar_t ~ 1
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": one_minus.sqrt(),
            "posterior_variance": betas * (1.0 - alphas_cumprod_prev) / one_minus,
            "posterior_mean_coef_x0": alphas_cumprod_prev.sqrt() * betas / one_minus,
            "posterior_mean_coef_xt": alphas.sqrt() * (1.0 - alphas_cumprod_prev) / one_minus,
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.to(torch.float32))

    @classmethod
    def linear(
        cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> NoiseSchedule:
        """beta_t linearly interpolated from ``beta_start`` to ``beta_end`` (MuSiC 4.1.4)."""
        if num_steps < 1:
            raise ValueError(f"num_steps: {num_steps} must be >= 1")
        return cls(torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """abar(t) = cos^2(((t/T + s) / (1 + s)) pi/2) / abar(0) (improved DDPM, eq. 17).

        betas are clipped at ``max_beta`` (< 1) so that alpha_t > 0 at the last step.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps: {num_steps} must be >= 1")
        grid = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((grid + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = (1 - abar[1:] / abar[:-1]).clamp(min=1e-8, max=max_beta)
        return cls(betas)

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) at t [B] -> [B]."""
        return (self.sqrt_alphas_cumprod[t] / self.sqrt_one_minus_alphas_cumprod[t]) ** 2

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq. 4, reparameterised); [B, D]."""
        sqrt_alpha_prod_t = _per_sample(self.sqrt_alphas_cumprod, t)
        sqrt_beta_prod_t = _per_sample(self.sqrt_one_minus_alphas_cumprod, t)
        return sqrt_alpha_prod_t * x0 + sqrt_beta_prod_t * noise

    def posterior_mean_variance(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean [B, D] and variance [B, 1] of q(x_{t-1} | x_t, x0) (DDPM eq. 6-7)."""
        mean = (
            _per_sample(self.posterior_mean_coef_x0, t) * x0
            + _per_sample(self.posterior_mean_coef_xt, t) * x_t
        )
        return mean, _per_sample(self.posterior_variance, t)

    def predict_x0_from_epsilon(self, x_t: Tensor, t: Tensor, epsilon: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (eq. 4 solved for x0)."""
        sqrt_alpha_prod_t = _per_sample(self.sqrt_alphas_cumprod, t)
        sqrt_beta_prod_t = _per_sample(self.sqrt_one_minus_alphas_cumprod, t)
        return (x_t - sqrt_beta_prod_t * epsilon) / sqrt_alpha_prod_t

    def predict_epsilon_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) (eq. 4 solved for eps)."""
        sqrt_alpha_prod_t = _per_sample(self.sqrt_alphas_cumprod, t)
        sqrt_beta_prod_t = _per_sample(self.sqrt_one_minus_alphas_cumprod, t)
        return (x_t - sqrt_alpha_prod_t * x0) / sqrt_beta_prod_t


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Eq. 7: [sin(t w_i), cos(t w_i)], w_i = exp(-log(10000) i / (dim/2 - 1)), i < dim/2.

    t: [B] (any numeric dtype) -> [B, dim]; ``dim`` must be even and >= 4.
    """
    if dim % 2 or dim < 4:
        raise ValueError(f"dim: {dim} must be even and >= 4")
    half = dim // 2
    i = torch.arange(half, device=t.device, dtype=torch.float32)
    omega = torch.exp(-math.log(10000.0) * i / (half - 1))
    angles = t.to(torch.float32).unsqueeze(-1) * omega  # [B, dim/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@attrs.frozen(eq=False)
class StepOutput:
    """One reverse step: x_{t-1} [B, D] and the network's x0 estimate [B, D]."""

    prev_sample: Tensor
    pred_original_sample: Tensor


Prediction = Literal["x0", "epsilon"]


def _x0_of(
    schedule: NoiseSchedule, output: Tensor, x_t: Tensor, t: Tensor, prediction: Prediction
) -> Tensor:
    if prediction == "x0":
        return output
    return schedule.predict_x0_from_epsilon(x_t, t, output)


def ddpm_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: Tensor,
    x_t: Tensor,
    noise: Tensor,
    prediction: Prediction = "x0",
) -> StepOutput:
    """Ancestral step x_t -> x_{t-1} ~ p_theta(x_{t-1} | x_t) (eq. 5), per-sample t [B]."""
    # 1. the network's estimate of x0 (eq. 10; converted from eps by eq. 4 if needed)
    pred_x0 = _x0_of(schedule, model_output, x_t, t, prediction)
    # 2. mean mu_theta: eq. 6 for an x0-predicting network is the posterior mean of
    #    q(x_{t-1} | x_t, x0_hat) (DDPM eq. 7); identical to eq. 6 with eps_hat from eq. 4
    mean, variance = schedule.posterior_mean_variance(pred_x0, x_t, t)
    # 3. Sigma_theta = sigma^2(t) I with sigma^2(t) = posterior variance (0 at t = 0)
    prev = mean + variance.sqrt() * noise
    return StepOutput(prev_sample=prev, pred_original_sample=pred_x0)


def ddim_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: Tensor,
    x_t: Tensor,
    prediction: Prediction = "x0",
) -> StepOutput:
    """Deterministic DDIM step (eta = 0, Song et al. 2021 eq. 12) to the previous step."""
    # 1. x0 and eps estimates (eq. 10, eq. 4)
    pred_x0 = _x0_of(schedule, model_output, x_t, t, prediction)
    pred_eps = schedule.predict_epsilon_from_x0(x_t, t, pred_x0)
    # 2. x_{t-1} = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1}) eps_hat
    alpha_prod_t_prev = _per_sample(schedule.alphas_cumprod_prev, t)
    prev = alpha_prod_t_prev.sqrt() * pred_x0 + (1.0 - alpha_prod_t_prev).sqrt() * pred_eps
    return StepOutput(prev_sample=prev, pred_original_sample=pred_x0)


Sampler = Literal["ddpm", "ddim"]


def sample(
    schedule: NoiseSchedule,
    denoise: Denoise,
    x_start: Tensor,
    condition: Tensor | None,
    *,
    sampler: Sampler = "ddpm",
    prediction: Prediction = "x0",
    generator: torch.Generator | None = None,
    start_step: int | None = None,
) -> Tensor:
    """Run the reverse chain from x_{start_step} = ``x_start`` [B, D] down to x0 [B, D].

    ``start_step`` defaults to T-1 (MuSiC 3.3.4 starts from pure noise there). The loop is
    over the T steps only; every step processes all B users at once.
    """
    first = schedule.num_steps - 1 if start_step is None else start_step
    x_t = x_start
    batch = x_t.shape[0]
    for step in range(first, -1, -1):
        t = torch.full((batch,), step, dtype=torch.long, device=x_t.device)
        output = denoise(x_t, t, condition)
        if sampler == "ddim":
            x_t = ddim_step(schedule, output, t, x_t, prediction).prev_sample
        else:
            noise = torch.randn(x_t.shape, generator=generator, device=x_t.device)
            x_t = ddpm_step(schedule, output, t, x_t, noise, prediction).prev_sample
    return x_t
