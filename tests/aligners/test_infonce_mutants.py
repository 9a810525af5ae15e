"""Tests that kill surviving mutants of cdr.aligners.infonce (docs/testing.md): the loss
recomputed by hand from the heads' weights (float64), both denominators, the B = 2 edge,
the weight, the heads' layers and the component's build."""

from __future__ import annotations

import math
import re

import pytest
import torch

from cdr.aligners.infonce import InfoNCEAligner, InfoNCEConfig, component, head, info_nce
from cdr.components import BuildContext


def _project(seq: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    w1, b1 = seq[0].weight.detach().double(), seq[0].bias.detach().double()
    w2, b2 = seq[2].weight.detach().double(), seq[2].bias.detach().double()
    return (x.double() @ w1.T + b1).clamp_min(0) @ w2.T + b2


def _reference(za: torch.Tensor, zb: torch.Tensor, tau: float, denominator: str) -> float:
    """L1 + L2 by explicit sums: -mean_u log(exp(s_uu / tau) / sum_{u'} exp(s_uu' / tau))."""
    n = len(za)
    s = [[float(za[u] @ zb[v]) / tau for v in range(n)] for u in range(n)]
    total = 0.0
    for u in range(n):
        others = [v for v in range(n) if denominator == "standard" or v != u]
        row = math.log(sum(math.exp(s[u][v]) for v in others))
        col = math.log(sum(math.exp(s[v][u]) for v in others))
        total += (row - s[u][u]) + (col - s[u][u])
    return total / n


@pytest.mark.parametrize("denominator", ["standard", "paper"])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("batch", [2, 4])
def test_loss_matches_hand_computation(denominator: str, similarity: str, batch: int) -> None:
    torch.manual_seed(0)
    cfg = InfoNCEConfig(
        temperature=0.3, weight=0.5, hidden=5, denominator=denominator, similarity=similarity
    )
    aligner = InfoNCEAligner(3, cfg)
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(batch, 3, generator=gen), torch.randn(batch, 3, generator=gen)
    za, zb = _project(aligner.head_a, a), _project(aligner.head_b, b)
    if similarity == "cosine":
        za, zb = za / za.norm(dim=1, keepdim=True), zb / zb.norm(dim=1, keepdim=True)
    expected = 0.5 * _reference(za, zb, 0.3, denominator)
    assert float(aligner.loss(a, b).detach()) == pytest.approx(expected, rel=1e-5)


def test_info_nce_defaults_to_the_papers_denominator() -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    assert float(info_nce(a, b, 0.5)) == pytest.approx(_reference(a, b, 0.5, "paper"), rel=1e-5)


def test_head_is_linear_relu_linear() -> None:
    layers = head(4, 6)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Linear"]
    assert layers[0].weight.shape == (6, 4) and layers[2].weight.shape == (4, 6)


def test_fewer_than_two_users_and_shape_mismatch() -> None:
    aligner = InfoNCEAligner(3)
    zero = aligner.loss(torch.randn(1, 3), torch.randn(1, 3))
    assert float(zero) == 0.0 and zero.shape == ()
    with pytest.raises(ValueError, match=re.escape("a, b: shapes differ ([2, 3] vs [2, 4])")):
        aligner.loss(torch.randn(2, 3), torch.randn(2, 4))


def test_build_uses_the_config_and_seed() -> None:
    cfg = InfoNCEConfig(temperature=0.7, batch_users=9, hidden=2)
    built = component.build(cfg, BuildContext(dim=4, seed=5))
    assert built.config is cfg and built.batch_users == 9
    assert built.head_a[0].weight.shape == (2, 4)
    torch.manual_seed(5)
    direct = InfoNCEAligner(4, cfg)
    for x, y in zip(built.parameters(), direct.parameters(), strict=True):
        torch.testing.assert_close(x, y)
    assert InfoNCEAligner(4).batch_users == InfoNCEConfig().batch_users
