from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cdr.errors import DataError
from cdr.evaluation.ranking import RankingResult
from cdr.evaluation.significance import paired_test, paired_values


def _result(users: list[int], values: list[float]) -> RankingResult:
    return RankingResult(
        torch.tensor(users), {"ndcg@20": torch.tensor(values, dtype=torch.float64)}
    )


def test_pairs_only_common_users_without_nan() -> None:
    a = _result([0, 1, 2, 3, 7], [0.1, 0.2, math.nan, 0.4, 0.9])
    b = _result([1, 2, 3, 5, 7], [0.3, 0.5, 0.1, 0.0, 0.2])
    users, va, vb = paired_values(a, b, "ndcg@20")
    assert users.tolist() == [1, 3, 7]
    assert va.tolist() == [0.2, 0.4, 0.9]
    assert vb.tolist() == [0.3, 0.1, 0.2]


@pytest.mark.parametrize("method", ["t", "wilcoxon"])
def test_matches_scipy_on_common_users(method: str) -> None:
    rng = np.random.default_rng(0)
    va, vb = rng.random(40), rng.random(40) * 0.8
    a = _result([*range(40), 99], [*va, 0.5])
    b = _result(list(range(40)), list(vb))
    result = paired_test(a, b, "ndcg@20", method)  # type: ignore[arg-type]
    expected = stats.ttest_rel(va, vb) if method == "t" else stats.wilcoxon(va, vb)
    assert result.n == 40
    assert result.mean_a == pytest.approx(va.mean())
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)


def test_degenerate_cases() -> None:
    same = _result([0, 1, 2], [0.1, 0.2, 0.3])
    assert paired_test(same, same, "ndcg@20").pvalue == 1.0
    with pytest.raises(DataError, match="in common"):
        paired_test(_result([0], [0.1]), _result([0], [0.2]), "ndcg@20")
    with pytest.raises(DataError, match="no per-user 'mae'"):
        paired_test(same, same, "mae")


def test_constant_shift_is_certain_without_scipy_warnings() -> None:
    base = np.linspace(0, 1, 12)
    a = _result(list(range(12)), list(base + 0.1))
    b = _result(list(range(12)), list(base))
    for method in ("t", "wilcoxon"):
        result = paired_test(a, b, "ndcg@20", method)  # type: ignore[arg-type]
        assert result.pvalue == 0.0 and result.statistic == math.inf
