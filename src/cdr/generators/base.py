"""``GeneratorBase``: the neutral defaults of the Generator interface.

A trainable generator subclasses it (an ``nn.Module``), sets ``self.traits`` when it
differs from the defaults (no history, no side users, its own space, lambda = 1) and
implements ``loss`` and ``generate``; ``history`` is only passed when
``traits.uses_history`` is True, so other generators may ignore it.
"""

from __future__ import annotations

from torch import Tensor, nn

from cdr.interfaces import GeneratorTraits, History


class GeneratorBase(nn.Module):
    """Base of the built-in generators; see ``cdr.interfaces.Generator``."""

    def __init__(self, traits: GeneratorTraits | None = None) -> None:
        super().__init__()
        self.traits = traits or GeneratorTraits()

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        raise NotImplementedError

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, float]:
        """Numbers about the trained generator worth recording with a run's metrics."""
        return {}
