"""Paired significance tests between two runs over the per-user values of one metric.

Only users evaluated in both runs (and with a non-NaN value in both) are paired. ``"t"`` is the
paired t-test (``scipy.stats.ttest_rel``), ``"wilcoxon"`` the Wilcoxon signed-rank test
(``scipy.stats.wilcoxon``, zero differences dropped as in its default), both two-sided.
When every difference is the same (up to float noise) both tests are undefined; the result is
then p = 1 for a zero difference and p = 0 (statistic = +-inf) otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import numpy as np
from scipy import stats

from cdr.errors import DataError
from cdr.evaluation.ranking import RankingResult

Method = Literal["t", "wilcoxon"]
METHODS: tuple[Method, ...] = ("t", "wilcoxon")


@attrs.frozen
class PairedTest:
    """Outcome of a paired test: ``mean_a``/``mean_b`` over the ``n`` common users."""

    metric: str
    method: Method
    n: int
    mean_a: float
    mean_b: float
    statistic: float
    pvalue: float


def paired_values(a: RankingResult, b: RankingResult, metric: str) -> tuple[np.ndarray, ...]:
    """(users, values_a, values_b) [n] of users common to both results, NaNs dropped."""
    for side, result in (("A", a), ("B", b)):
        if metric not in result.per_user:
            known = ", ".join(result.per_user) or "none"
            raise DataError(f"run {side} has no per-user {metric!r}; known: {known}")
    users, ia, ib = np.intersect1d(
        a.users.cpu().numpy(), b.users.cpu().numpy(), assume_unique=True, return_indices=True
    )
    va = a.per_user[metric].cpu().numpy().astype(np.float64)[ia]
    vb = b.per_user[metric].cpu().numpy().astype(np.float64)[ib]
    keep = ~(np.isnan(va) | np.isnan(vb))
    return users[keep], va[keep], vb[keep]


def paired_test(
    a: RankingResult, b: RankingResult, metric: str, method: Method = "t"
) -> PairedTest:
    """Two-sided paired test of ``metric`` between results ``a`` and ``b`` (common users)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _, va, vb = paired_values(a, b, metric)
    if va.size < 2:
        raise DataError(f"{metric}: only {va.size} user(s) in common; a paired test needs 2+")
    diff = va - vb
    scale = max(1.0, float(np.abs(va).max()), float(np.abs(vb).max()))
    if float(np.ptp(diff)) <= 1e-12 * scale:  # constant differences: the tests are undefined
        mean_diff = float(diff.mean())
        if abs(mean_diff) <= 1e-12 * scale:
            statistic, pvalue = 0.0, 1.0
        else:
            statistic, pvalue = math.copysign(math.inf, mean_diff), 0.0
    elif method == "t":
        res = stats.ttest_rel(va, vb)
        statistic, pvalue = float(res.statistic), float(res.pvalue)
    else:
        res = stats.wilcoxon(va, vb)
        statistic, pvalue = float(res.statistic), float(res.pvalue)
    return PairedTest(
        metric, method, int(va.size), float(va.mean()), float(vb.mean()), statistic, pvalue
    )
