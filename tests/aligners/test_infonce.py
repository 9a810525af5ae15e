"""InfoNCE aligner (MICRec eqs. 7-8): both directions, paper vs standard denominators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.aligners.infonce import InfoNCEAligner, InfoNCEConfig, info_nce
from cdr.components import BuildContext
from cdr.interfaces import Aligner
from cdr.registry import Registry


def reference(a: torch.Tensor, b: torch.Tensor, tau: float, paper: bool) -> float:
    """Eq. 7 + eq. 8 summed term by term."""
    n = len(a)
    l1 = l2 = 0.0
    for u in range(n):
        pos = float(a[u] @ b[u]) / tau
        others = [v for v in range(n) if v != u or not paper]
        l1 -= pos - math.log(sum(math.exp(float(a[u] @ b[v]) / tau) for v in others))
        l2 -= pos - math.log(sum(math.exp(float(a[v] @ b[u]) / tau) for v in others))
    return (l1 + l2) / n


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.floats(0.05, 1.0), st.booleans(), st.integers(0, 2**16))
def test_matches_equations(n: int, tau: float, paper: bool, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=1)
    got = info_nce(a, b, tau, "paper" if paper else "standard")
    assert float(got) == pytest.approx(reference(a, b, tau, paper), rel=1e-6)


def test_loss_pulls_matching_users_together() -> None:
    torch.manual_seed(0)
    aligner = InfoNCEAligner(8, InfoNCEConfig(temperature=0.2, denominator="standard"))
    assert isinstance(aligner, Aligner)
    a = torch.randn(16, 8)
    b = torch.randn(16, 8, requires_grad=True)
    opt = torch.optim.Adam([b, *aligner.parameters()], lr=0.05)
    first = aligner.loss(a, b).item()
    for _ in range(60):
        opt.zero_grad()
        aligner.loss(a, b).backward()
        opt.step()
    assert aligner.loss(a, b).item() < 0.5 * first


def test_weight_scales_and_tiny_batches_give_zero() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    one = InfoNCEAligner(3, InfoNCEConfig(weight=1.0))
    two = InfoNCEAligner(3, InfoNCEConfig(weight=2.0))
    two.load_state_dict(one.state_dict())
    torch.testing.assert_close(two.loss(a, b), 2 * one.loss(a, b))
    assert one.loss(a[:1], b[:1]).item() == 0.0


def test_registered_and_seeded() -> None:
    component = Registry().get("aligners", "infonce")
    ctx = BuildContext(dim=5, seed=3)
    x, y = component.build(InfoNCEConfig(), ctx), component.build(InfoNCEConfig(), ctx)
    for p, q in zip(x.parameters(), y.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def _scaled(aligner: InfoNCEAligner, factor: float) -> InfoNCEAligner:
    """A copy whose heads' outputs are ``factor`` times larger (last layers scaled)."""
    copy = InfoNCEAligner(8, aligner.config)
    copy.load_state_dict(aligner.state_dict())
    with torch.no_grad():
        for head in (copy.head_a, copy.head_b):
            head[-1].weight.mul_(factor)
            head[-1].bias.mul_(factor)
    return copy


def test_default_loss_is_bounded_below_and_blind_to_the_heads_scale() -> None:
    torch.manual_seed(1)
    aligner = InfoNCEAligner(8, InfoNCEConfig(temperature=0.2))
    assert (aligner.config.similarity, aligner.config.denominator) == ("cosine", "standard")
    a, b = torch.randn(32, 8), torch.randn(32, 8)
    base = float(aligner.loss(a, b))
    for factor in (10.0, 1000.0):
        assert float(_scaled(aligner, factor).loss(a, b)) == pytest.approx(base, rel=1e-4)
    # cosine logits lie in [-1/tau, 1/tau]: each direction >= log(1 + (B - 1) e^{-2/tau})
    bound = 2 * math.log(1 + 31 * math.exp(-2 / 0.2))
    assert base >= bound
    # even with b = a (perfect alignment) the loss stays above that bound
    assert float(InfoNCEAligner(8, InfoNCEConfig(temperature=0.2)).loss(a, a)) >= bound


def test_the_papers_literal_form_has_no_lower_bound() -> None:
    """Raw dot products with the positive excluded from the denominator: scaling aligned
    projections lowers the loss without limit (what the cosine default prevents)."""
    torch.manual_seed(1)
    x = F.normalize(torch.randn(32, 8), dim=1)
    y = F.normalize(x + 0.05 * torch.randn(32, 8), dim=1)
    losses = [float(info_nce(c * x, c * y, 0.2, "paper")) for c in (1.0, 3.0, 10.0)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < -100
    standard = [float(info_nce(c * x, c * y, 0.2, "standard")) for c in (1.0, 3.0, 10.0)]
    assert min(standard) >= 0.0
