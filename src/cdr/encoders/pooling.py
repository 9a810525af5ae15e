"""Token pooling of a transformer's hidden states into one vector per sequence.

``hidden_states`` is the tuple transformers returns with ``output_hidden_states=True``:
``hidden_states[0]`` is the embedding-layer output and ``hidden_states[l]`` the output of
transformer block l = 1..L. MuSiC eq. 1 (first-last-avg, after Li et al. 2020 [17]):

    h = 1/2 (1/n sum_i H_1^i + 1/n sum_i H_L^i)

We read H_1 as the output of the *first transformer block*, ``hidden_states[1]``, not the
embedding output: eq. 1 indexes layers 1..L, its reference [17] averages BERT's first and last
encoder layers (the TF BERT encoder-layer list excludes the embeddings), and SimCSE's
``avg_first_last`` was corrected to ``hidden_states[1]`` for the same reason. H_L is
``hidden_states[-1]`` (for Llama-style models, after the final norm). Means run over the n
real tokens of each sequence (``attention_mask`` = 1), so padding never counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

POOLINGS = ("first_last_avg", "last_mean", "last_token", "cls")


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """hidden [B, T, H], mask [B, T] (1 = token) -> [B, H] mean over real tokens."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def last_token(hidden: Tensor, mask: Tensor) -> Tensor:
    """The hidden state of each sequence's last real token (left or right padding) [B, H]."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [B, T]
    index = torch.where(mask.bool(), positions, -1).amax(1).clamp_min(0)  # [B]
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def pool(hidden_states: Sequence[Tensor], mask: Tensor, method: str) -> Tensor:
    """Pool ``hidden_states`` ([L+1] of [B, T, H]) to [B, H] by ``method`` (see POOLINGS)."""
    last = hidden_states[-1]
    if method == "first_last_avg":  # MuSiC eq. 1
        if len(hidden_states) < 2:
            raise ValueError("pooling: first_last_avg needs the per-layer hidden states")
        return 0.5 * (masked_mean(hidden_states[1], mask) + masked_mean(last, mask))
    if method == "last_mean":
        return masked_mean(last, mask)
    if method == "last_token":
        return last_token(last, mask)
    if method == "cls":
        return last[:, 0]
    raise ValueError(f"pooling: {method!r} is not one of {', '.join(POOLINGS)}")
