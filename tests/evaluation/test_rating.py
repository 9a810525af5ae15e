from __future__ import annotations

import pytest
import torch

from cdr.evaluation.rating import evaluate_rating, rating_per_user


def test_pooled_errors() -> None:
    out = evaluate_rating(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([2.0, 4.0, 4.0]))
    assert out["mae"] == pytest.approx(1.0)
    assert out["rmse"] == pytest.approx((5 / 3) ** 0.5)


def test_per_user_errors() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 5.0])
    target = torch.tensor([2.0, 4.0, 3.0, 1.0])
    users = torch.tensor([7, 7, 2, 7])
    result = rating_per_user(pred, target, users)
    assert result.users.tolist() == [2, 7]
    torch.testing.assert_close(
        result.per_user["mae"], torch.tensor([0.0, 7 / 3], dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.per_user["rmse"], torch.tensor([0.0, (21 / 3) ** 0.5], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="1-D"):
        rating_per_user(pred, target, users[:2])
