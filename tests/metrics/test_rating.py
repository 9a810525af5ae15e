from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.metrics import mae, rmse


def test_hand_computed() -> None:
    pred = torch.tensor([3.0, 4.0, 1.0, 5.0])
    target = torch.tensor([4.0, 4.0, 3.0, 2.0])
    # errors -1, 0, -2, 3
    assert mae(pred, target) == pytest.approx(6 / 4)
    assert rmse(pred, target) == pytest.approx(math.sqrt(14 / 4))


def test_shape_mismatch_and_empty_are_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        mae(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="empty"):
        rmse(torch.zeros(0), torch.zeros(0))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0, 5)), min_size=1, max_size=30))
def test_against_python_and_rmse_bounds(pairs: list[tuple[float, float]]) -> None:
    pred = torch.tensor([p for p, _ in pairs])
    target = torch.tensor([t for _, t in pairs])
    errors = [float(p) - float(t) for p, t in zip(pred.tolist(), target.tolist(), strict=True)]
    assert mae(pred, target) == pytest.approx(sum(abs(e) for e in errors) / len(errors))
    expected_rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert rmse(pred, target) == pytest.approx(expected_rmse)
    assert mae(pred, target) <= rmse(pred, target) + 1e-12
