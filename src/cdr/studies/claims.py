"""A paper's qualitative claims, checked on the tables a reproduction just ran.

Each claim is a set of comparisons between table cells (means over seeds, as the tables
show them): it **holds** when every comparison goes the paper's way, **partly (k of n)**
when some do, **does not hold** when none do, and is **not measured** when the tables it
needs were not run (``--table``, ``--exclude``). A comparison whose gap is smaller than the
larger of the two stds is counted as it falls but listed with ``~`` (within seed noise).
The numbers are printed next to each verdict, so a sentence in the docs can quote them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

from cdr.evaluation.references import LABELS
from cdr.studies.tables import TableResult, lower_is_better


@attrs.frozen
class Comparison:
    """``better`` should beat ``worse`` on ``metric`` in ``column``."""

    column: str
    metric: str
    better: str
    worse: str
    better_mean: float
    better_std: float
    worse_mean: float
    worse_std: float

    @property
    def measured(self) -> bool:
        return not (math.isnan(self.better_mean) or math.isnan(self.worse_mean))

    @property
    def holds(self) -> bool:
        if lower_is_better(self.metric):
            return self.better_mean < self.worse_mean
        return self.better_mean > self.worse_mean

    @property
    def within_noise(self) -> bool:
        return abs(self.better_mean - self.worse_mean) < max(self.better_std, self.worse_std)

    def text(self) -> str:
        mark = "~" if self.within_noise else ""
        sign = "<" if lower_is_better(self.metric) else ">"
        sign = sign if self.holds else {"<": ">=", ">": "<="}[sign]
        digits = 1 if self.metric.endswith("%") else 4
        return (
            f"{self.column} {self.metric}: {self.better} {self.better_mean:.{digits}f} {sign} "
            f"{self.worse} {self.worse_mean:.{digits}f}{mark}"
        )


@attrs.frozen
class Claim:
    """One claim of the paper and the comparisons that test it."""

    text: str
    comparisons: tuple[Comparison, ...]

    @property
    def verdict(self) -> str:
        measured = [c for c in self.comparisons if c.measured]
        if not measured:
            return "not measured"
        won = sum(c.holds for c in measured)
        noisy = sum(c.within_noise for c in measured)
        noise = f"; {noisy} within one std" if noisy else ""
        if won == len(measured):
            return f"holds ({won} of {len(measured)}{noise})"
        if won == 0:
            return f"does not hold (0 of {len(measured)}{noise})"
        return f"partly ({won} of {len(measured)}{noise})"


#: how a reference predictor is named among the rows (as the tables label it)
REFERENCE = "reference: "


def _cell(result: TableResult, row: str, column: str, metric: str) -> tuple[float, float]:
    """A method row's mean ± std in a cell, or a reference's (``REFERENCE`` + its label)."""
    if row.startswith(REFERENCE):
        name = next(n for n, label in LABELS.items() if label == row.removeprefix(REFERENCE))
        return result.reference(name, column, metric)
    return result.mean_std(row, column, metric)


def compare(
    results: Mapping[str, TableResult],
    better: tuple[str, str],
    worse: tuple[str, str],
    column: str,
    metric: str,
) -> Comparison:
    """``better`` = (table, row) against ``worse`` = (table, row) in ``column``; NaN when a
    table or row is missing."""
    nan = (math.nan, math.nan)
    b = _cell(results[better[0]], better[1], column, metric) if better[0] in results else nan
    w = _cell(results[worse[0]], worse[1], column, metric) if worse[0] in results else nan
    label = worse[1] if worse[0] == better[0] else f"{worse[1]} ({worse[0]})"
    return Comparison(column, metric, better[1], label, *b, *w)


def _best(scored: Sequence[tuple[float, str]], metric: str) -> str | None:
    """The label of the best (mean, label) pair, NaN means left out; None if none is left."""
    kept = [(m, label) for m, label in scored if not math.isnan(m)]
    if not kept:
        return None
    pick = min if lower_is_better(metric) else max
    return pick(kept)[1]


def best_other(
    result: TableResult, row: str, column: str, metric: str, among: Sequence[str] | None = None
) -> str | None:
    """The best row of ``result`` other than ``row`` (of ``among``, default all) in a cell."""
    rows = [r for r, _ in result.spec.rows if r != row and (among is None or r in among)]
    return _best([(result.mean_std(r, column, metric)[0], r) for r in rows], metric)


def best_reference(result: TableResult, column: str, metric: str) -> str | None:
    """The best reference predictor of a cell, labelled as ``_cell`` reads it back."""
    scored = [
        (result.reference(n, column, metric)[0], f"{REFERENCE}{LABELS[n]}")
        for n in result.references()
    ]
    return _best(scored, metric)


def against_best(
    results: Mapping[str, TableResult],
    table: str,
    row: str,
    metrics: Sequence[str],
    *,
    references: bool = False,
) -> tuple[Comparison, ...]:
    """``row`` against the best other row (or the best reference) of every cell."""
    if table not in results:
        return ()
    result = results[table]
    out = []
    for column, _ in result.spec.columns:
        for metric in metrics:
            if references:
                rival = best_reference(result, column, metric)
            else:
                rival = best_other(result, row, column, metric)
            if rival is not None:
                out.append(compare(results, (table, row), (table, rival), column, metric))
    return tuple(out)


def render_claims(claims: Sequence[Claim]) -> str:
    lines = [
        "### The paper's claims, checked on these tables",
        "",
        "Means over seeds; `~`: the gap is smaller than the larger std of the two cells.",
        "",
        "| claim | verdict | numbers |",
        "|---|---|---|",
    ]
    for claim in claims:
        numbers = "; ".join(c.text() for c in claim.comparisons if c.measured) or "-"
        lines.append(f"| {claim.text} | {claim.verdict} | {numbers} |")
    return "\n".join(lines) + "\n"


#: MuSiC's error metrics and its NDCG column (the ranking of a user's own rated items)
MUSIC_METRICS = ("mae", "rmse", "rated_ndcg@20")
#: the baselines that use ratings only (the paper compares "w/o MLLM" with these)
RATING_ONLY = ("CMF", "EMCDR", "SSCDR", "LACDR", "PTUPCDR", "DiffCDR")


def music_claims(results: Mapping[str, TableResult]) -> list[Claim]:
    """MuSiC's claims (sections 4.2, 4.3 and 4.5 of the paper) on ``results`` by table."""
    beta = "beta=0.2"
    ablation = {
        "side users help (Table 3: MuSiC vs w/o side)": "w/o side",
        "the diffusion module helps (Table 3: MuSiC vs w/o diffusion)": "w/o diffusion",
        "content features help (Table 3: MuSiC vs w/o MLLM)": "w/o MLLM",
    }
    claims = [
        Claim(
            "MuSiC beats every baseline (Table 2, every beta)",
            against_best(results, "table2", "MuSiC", MUSIC_METRICS),
        ),
        Claim(
            "MuSiC beats the best reference predictor (Table 2; the project's bar, not a "
            "claim of the paper)",
            against_best(results, "table2", "MuSiC", MUSIC_METRICS, references=True),
        ),
        *(
            Claim(
                text,
                tuple(
                    compare(results, ("table3", "MuSiC"), ("table3", row), beta, m)
                    for m in MUSIC_METRICS
                ),
            )
            for text, row in ablation.items()
        ),
        Claim(
            "w/o MLLM beats the rating-only baselines on the same features (Table 3 vs "
            "Table 2, beta = 0.2)",
            tuple(
                compare(results, ("table3", "w/o MLLM"), ("table2", other), beta, m)
                for other in RATING_ONLY
                for m in ("mae", "rmse")
            ),
        ),
        Claim(
            "MuSiC beats every baseline on dual cold-start (Table 4)",
            against_best(results, "table4", "MuSiC", ("dual_mae", "dual_rmse")),
        ),
        Claim(
            "MuSiC beats the best reference predictor on dual cold-start (Table 4; the "
            "project's bar)",
            against_best(
                results, "table4", "MuSiC", ("dual_mae", "dual_rmse", "dual_rated_ndcg@20"),
                references=True,
            ),
        ),
        Claim(
            "MuSiC's lead is larger on cold items (Table 4's lead over the best baseline "
            "vs Table 2's at the same beta; relative, %)",
            _lead_on_cold_items(results),
        ),
        Claim(
            "a moderate T is best (Fig. 3: the best of T = 5, 10, 20 beats the better of "
            "T = 2 and T = 50), per beta and metric",
            _moderate_t(results),
        ),
        Claim(
            "tanh beats ReLU and ReLU beats softmax (Fig. 4, RMSE per beta)",
            tuple(
                compare(results, ("fig4", a), ("fig4", b), column, "rmse")
                for column in _columns(results, "fig4")
                for a, b in (("tanh", "relu"), ("relu", "softmax"))
            ),
        ),
    ]
    return claims


def _columns(results: Mapping[str, TableResult], table: str) -> list[str]:
    return [c for c, _ in results[table].spec.columns] if table in results else []


def _moderate_t(results: Mapping[str, TableResult]) -> tuple[Comparison, ...]:
    if "fig3" not in results:
        return ()
    fig = results["fig3"]
    moderate = ("T=5", "T=10", "T=20")
    out = []
    for column in _columns(results, "fig3"):
        for metric in ("rmse", "rated_ndcg@20"):
            inner = best_other(fig, "", column, metric, moderate)
            outer = best_other(fig, "", column, metric, ("T=2", "T=50"))
            if inner is not None and outer is not None:
                out.append(compare(results, ("fig3", inner), ("fig3", outer), column, metric))
    return tuple(out)


def _lead(result: TableResult, column: str, metric: str) -> tuple[float, float]:
    """MuSiC's relative improvement (%) over the best other row, and 0 std (a derived
    number: the claim compares the two leads)."""
    rival = best_other(result, "MuSiC", column, metric)
    if rival is None:
        return math.nan, 0.0
    ours = result.mean_std("MuSiC", column, metric)[0]
    theirs = result.mean_std(rival, column, metric)[0]
    gain = (theirs - ours) if lower_is_better(metric) else (ours - theirs)
    return 100.0 * gain / abs(theirs), 0.0


def _lead_on_cold_items(results: Mapping[str, TableResult]) -> tuple[Comparison, ...]:
    if "table4" not in results or "table2" not in results:
        return ()
    dual = results["table4"]
    column = dual.spec.columns[0][0]
    beta = next((o.split("=", 1)[1] for o in dual.spec.columns[0][1] if "split.beta=" in o), "")
    warm = f"beta={beta}"
    out = []
    for metric in ("mae", "rmse"):
        cold = _lead(dual, column, f"dual_{metric}")
        users_only = _lead(results["table2"], warm, metric)
        out.append(
            Comparison(
                column,
                f"{metric} lead %",
                "cold items",
                f"cold users only ({warm})",
                *cold,
                *users_only,
            )
        )
    return tuple(out)


#: papers whose claims ``cdr reproduce`` checks
CLAIMS = {"music": music_claims}
