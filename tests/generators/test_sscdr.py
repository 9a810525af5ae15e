"""SSCDR: the semi-supervised loss and the neighbourhood inference against hand-computed
float64 references; the contract; it learns on planted data (beats the global mean)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from generator_contract import check_contract
from planted_coldstart import planted_run

from cdr.generators.sscdr import SSCDRConfig, SSCDRGenerator, component, unit_ball
from cdr.interfaces import History

W = [[1.0, 0.5], [-0.3, 2.0]]
B = [0.1, -0.2]
COND = [[0.2, 0.4], [-0.5, 0.1], [0.3, -0.6]]
TARGET = [[0.5, 1.0], [0.0, -0.4], [0.9, 0.2]]
ITEMS = [
    [[0.1, 0.6], [1.2, -0.4]],
    [[-0.6, 0.3], [0.5, 0.5]],
    [[0.0, 0.9], [0.7, 0.1]],
]
MASK = [[True, True], [True, False], [True, True]]
MARGIN = 0.5


def _f(x: list[float]) -> list[float]:
    return [W[r][0] * x[0] + W[r][1] * x[1] + B[r] for r in range(2)]


def _clip(v: list[float]) -> list[float]:
    n = math.hypot(*v)
    return [c / max(1.0, n) for c in v]


def _d(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))


def _generator(
    unlabeled_weight: float,
    inference: str = "neighbourhood",
    anchor: str = "target",
    clip: bool = False,
) -> SSCDRGenerator:
    config = SSCDRConfig(
        layers=1,
        margin=MARGIN,
        unlabeled_weight=unlabeled_weight,
        anchor=anchor,
        unit_ball=clip,
        inference=inference,
    )
    gen = SSCDRGenerator(2, 2, config).double()
    with torch.no_grad():
        gen.net[0].weight.copy_(torch.tensor(W, dtype=torch.float64))
        gen.net[0].bias.copy_(torch.tensor(B, dtype=torch.float64))
    return gen


def _history() -> History:
    return History(torch.tensor(ITEMS, dtype=torch.float64), torch.tensor(MASK))


@pytest.mark.parametrize(
    ("anchor", "clip"), [("target", False), ("mapped", True), ("target", True)]
)
def test_loss_is_supervised_plus_weighted_unlabeled_hinge(anchor: str, clip: bool) -> None:
    n = len(COND)
    supervised = sum(_d(_f(COND[b]), TARGET[b]) for b in range(n)) / n
    keep = _clip if clip else (lambda v: v)
    hinges, active = [], 0
    for b in range(n):
        prev = (b - 1) % n  # the in-batch negative comes from the previous row (roll 1)
        for slot in range(2):
            if not (MASK[b][slot] and MASK[prev][slot]):
                continue
            user = keep(TARGET[b] if anchor == "target" else _f(COND[b]))
            pos, neg = keep(_f(ITEMS[b][slot])), keep(_f(ITEMS[prev][slot]))
            hinge = max(0.0, MARGIN + _d(user, pos) - _d(user, neg))
            active += hinge > 0
            hinges.append(hinge)
    assert 0 < active < len(hinges)  # the case exercises both sides of the hinge
    assert any(math.hypot(*_f(x)) > 1 for row in ITEMS for x in row)  # and the clipping
    expected = supervised + 0.5 * sum(hinges) / len(hinges)
    gen = _generator(0.5, anchor=anchor, clip=clip)
    target = torch.tensor(TARGET, dtype=torch.float64)
    cond = torch.tensor(COND, dtype=torch.float64)
    with torch.no_grad():
        assert float(gen.loss(target, cond, _history())) == pytest.approx(expected, rel=1e-12)
        # without a history (or with lambda = 0) only the supervised part remains
        assert float(gen.loss(target, cond)) == pytest.approx(supervised, rel=1e-12)
        unlabeled_off = _generator(0.0).loss(target, cond, _history())
        assert float(unlabeled_off) == pytest.approx(supervised, rel=1e-12)
        assert float(gen.loss(target, None)) == 0.0  # side users carry nothing for a mapping


def test_neighbourhood_inference_averages_user_and_items() -> None:
    cond = torch.tensor(COND, dtype=torch.float64)
    out = _generator(0.5).generate(cond, history=_history())
    for b in range(len(COND)):
        points = [_f(COND[b])] + [_f(x) for x, m in zip(ITEMS[b], MASK[b], strict=True) if m]
        expected = [sum(p[d] for p in points) / len(points) for d in range(2)]
        assert out[b].tolist() == pytest.approx(expected, rel=1e-12)
    user_only = _generator(0.5, "user").generate(cond, history=_history())
    for b in range(len(COND)):
        assert user_only[b].tolist() == pytest.approx(_f(COND[b]), rel=1e-12)


def test_unit_ball_clips_long_vectors_only() -> None:
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)
    assert unit_ball(x).flatten().tolist() == pytest.approx([0.6, 0.8, 0.3, 0.4])


def test_contract() -> None:
    check_contract(component)
    check_contract(component, dim=3, in_dim=5)
    defaults = component.config_cls()  # DiffCDR's SSCDR: linear f, lambda 1, anchor u^T
    assert (defaults.layers, defaults.unlabeled_weight, defaults.anchor) == (1, 1.0, "target")
    assert defaults.inference == "user" and not defaults.unit_ball
    with pytest.raises(ValueError, match="inference"):
        SSCDRConfig(inference="two-hop")
    # a served cold-start user has no history: servable only when inference ignores it
    assert _generator(0.5, "user").traits.servable
    assert not _generator(0.5, "neighbourhood").traits.servable


@pytest.mark.slow
def test_learns_on_planted_data(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path, "sscdr")
    assert metrics["rmse"] < metrics["ref/global_mean/rmse"]
    assert metrics["mae"] < metrics["ref/global_mean/mae"]
    # and it is personal: one vector for everyone reaches the item means at best
    assert metrics["rmse"] < metrics["ref/item_mean/rmse"]
