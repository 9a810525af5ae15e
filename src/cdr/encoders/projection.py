"""The feature-extraction MLP of MuSiC section 3.2: encoder features -> ``out_dim`` features.

Two linear layers, each followed by the activation. MuSiC uses ``tanh`` (outputs bounded in
[-1, 1], signs kept); ``relu`` and ``softmax`` reproduce its activation analysis (sec. 4.4.2,
fig. 4); ``none`` is a linear head. Paper sizes: hidden 128, output 32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "none": lambda x: x,
}


class ProjectionHead(nn.Module):
    """``[B, in_dim] -> [B, out_dim]``: act(W2 · dropout(act(W1 x + b1)) + b2)."""

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        out_dim: int = 32,
        activation: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: {activation!r} is not one of {', '.join(map(repr, ACTIVATIONS))}"
            )
        for name, value in (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim)):
            if value <= 0:
                raise ValueError(f"{name}: {value!r} must be > 0")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: {dropout!r} is not in [0, 1)")
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.hidden_layer = nn.Linear(in_dim, hidden)
        self.output_layer = nn.Linear(hidden, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(self.act(self.hidden_layer(x)))  # [B, hidden]
        out: Tensor = self.act(self.output_layer(h))  # [B, out_dim]
        return out
