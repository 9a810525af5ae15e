"""The Generator contract of ``tests/generators/test_baselines.py`` for a component built
directly (issue 14's generators, until they are registered and listed there): scalar
losses with and without a condition (and with a history when the generator reads one),
[B, dim] outputs, seeded determinism, and a state round trip into a fresh build."""

from __future__ import annotations

import torch

from cdr.components import BuildContext, Component
from cdr.interfaces import Generator, History


def history(batch: int, length: int, dim: int) -> History:
    """A padded history: user b has ``b % (length + 1)`` items."""
    items = torch.randn(batch, length, dim)
    counts = torch.arange(batch) % (length + 1)
    mask = torch.arange(length)[None, :] < counts[:, None]
    return History(items, mask)


def check_contract(component: Component, dim: int = 4, in_dim: int = 4) -> None:
    def build() -> Generator:
        torch.manual_seed(0)
        gen: Generator = component.build(
            component.config_cls(), BuildContext(dim=dim, in_dim=in_dim)
        )
        return gen

    gen = build()
    assert isinstance(gen, Generator)
    target, cond = torch.randn(6, dim), torch.randn(6, in_dim)
    past = history(6, 3, in_dim) if gen.traits.uses_history else None
    assert gen.loss(target, cond).ndim == 0
    assert gen.loss(target, cond, past).ndim == 0
    assert gen.loss(target, None).ndim == 0
    gen.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        for h in (None, past):
            out = gen.generate(cond, history=h, seed=5)
            assert out.shape == (6, dim)
            assert torch.isfinite(out).all()
            assert torch.equal(out, gen.generate(cond, history=h, seed=5))
    again = build()
    again.load_state_dict(gen.state_dict())  # type: ignore[attr-defined]
    again.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        for h in (None, past):
            assert torch.equal(
                again.generate(cond, history=h, seed=5), gen.generate(cond, history=h, seed=5)
            )
