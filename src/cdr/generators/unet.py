"""Denoisers f_theta(x_t, t, f_con) over vectors: MuSiC's vectorized U-Net (3.3.3) and an MLP.

Both add the condition to x_t when one is given (side users have none), embed t with eq. 7,
and end in a linear layer that predicts x0 (eq. 10) or, for DiffCDR, the noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cdr.generators.ddpm import timestep_embedding


class TimeEmbedding(nn.Module):
    """t [B] -> eq. 7 sinusoid [B, dim] -> 2-layer MLP [B, dim]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.dim))


def shared_time_embedding(time: TimeEmbedding, t: Tensor) -> Tensor:
    """time(t) [B, D]; when every row has the same step (sampling), computed once as [1, D]
    and broadcast by the blocks: the same values without B copies of the time MLP."""
    if t.numel() > 1 and bool((t == t[0]).all()):
        return time(t[:1])
    return time(t)


class ConditionInput(nn.Module):
    """x_t + f_con ("added to the input feature vector", 3.3.3); a linear map first when the
    condition width differs from the vector width; x_t unchanged when f_con is None."""

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Identity() if cond_dim == dim else nn.Linear(cond_dim, dim)

    def forward(self, x_t: Tensor, condition: Tensor | None) -> Tensor:
        return x_t if condition is None else x_t + self.proj(condition)


class TimeBlock(nn.Module):
    """Residual block [B, in] -> [B, out] with the time embedding added after the first layer."""

    def __init__(self, in_width: int, out_width: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(in_width, out_width)
        self.time = nn.Linear(time_dim, out_width)
        self.out = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Linear(out_width, out_width))
        self.skip: nn.Module = (
            nn.Identity() if in_width == out_width else nn.Linear(in_width, out_width)
        )
        self.act = nn.SiLU()

    def forward(self, h: Tensor, temb: Tensor) -> Tensor:
        z = self.act(self.inp(h) + self.time(temb))
        return self.out(z) + self.skip(h)


class VectorUNet(nn.Module):
    """The vectorized U-Net: widths[0] > widths[1] > ... down, a middle block, back up with
    skip connections (concatenation), a linear output of width ``dim``.

    x_t [B, dim], t [B], condition [B, cond_dim] | None -> [B, dim].
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        widths: Sequence[int] = (128, 64),
        time_dim: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("widths: at least one width is needed")
        w = list(widths)
        self.condition = ConditionInput(dim, cond_dim)
        self.time = TimeEmbedding(time_dim)
        self.inp = nn.Linear(dim, w[0])
        self.down = nn.ModuleList(
            TimeBlock(w[i], w[i + 1], time_dim, dropout) for i in range(len(w) - 1)
        )
        self.middle = TimeBlock(w[-1], w[-1], time_dim, dropout)
        self.up = nn.ModuleList(
            TimeBlock(2 * w[i + 1], w[i], time_dim, dropout) for i in reversed(range(len(w) - 1))
        )
        self.out = nn.Linear(2 * w[0], dim)

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        temb = shared_time_embedding(self.time, t)  # [B or 1, time_dim]
        h = self.inp(self.condition(x_t, condition))  # [B, w0]
        skips = [h]
        for block in self.down:  # down-sampling: widths shrink
            h = block(h, temb)
            skips.append(h)
        h = self.middle(h, temb)  # bottleneck [B, w_last]
        for block in self.up:  # up-sampling: concat the skip of the same width
            h = block(torch.cat([h, skips.pop()], dim=-1), temb)
        return self.out(torch.cat([h, skips.pop()], dim=-1))  # linear output (x0_hat)


class MLPDenoiser(nn.Module):
    """Plain MLP on [x_t + f_con, temb] (the comparison denoiser)."""

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        hidden: int = 128,
        layers: int = 2,
        time_dim: int = 32,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.condition = ConditionInput(dim, cond_dim)
        self.time = TimeEmbedding(time_dim)
        mods: list[nn.Module] = []
        width = dim + time_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.SiLU(), nn.Dropout(dropout)]
            width = hidden
        mods.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*mods)

    def forward(self, x_t: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        h = self.condition(x_t, condition)
        return self.net(torch.cat([h, self.time(t)], dim=-1))
