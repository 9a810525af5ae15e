"""Reproduction tables: rows (methods) x columns (conditions, e.g. beta) x seeds -> mean +- std.

A ``TableSpec`` names its rows and columns by config overrides; ``run_table`` runs every
cell through ``run_cells`` (so a study resumes) and ``render_markdown`` / ``table_rows``
turn the results into the papers' shape.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from cdr.evaluation.references import LABELS, PREFIX
from cdr.progress import Reporter
from cdr.registry import Registry
from cdr.studies.cells import Cell, CellResult, run_cells

#: joins table, row and column into a cell label (row names may contain "/", as "w/o side")
SEP = " | "


@attrs.frozen
class TableSpec:
    """rows / columns: (label, overrides); metrics: metric keys shown per column.
    tuned_from: ``"table:row"`` when tuning (``cdr reproduce --tune-trials``) gives every
    row that method's chosen settings instead of a study of its own (a sensitivity study
    varies one parameter of a tuned model); ``"table"``: each row takes the settings of
    the row of that table with its label (the same methods on another split)."""

    name: str
    title: str
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    columns: tuple[tuple[str, tuple[str, ...]], ...]
    metrics: tuple[str, ...]
    base: tuple[str, ...] = ()
    tuned_from: str = ""


@attrs.frozen
class TableResult:
    spec: TableSpec
    # (row label, column label) -> metric -> values over seeds
    values: dict[tuple[str, str], dict[str, list[float]]]
    run_dirs: dict[tuple[str, str], list[str]]

    def mean_std(self, row: str, column: str, metric: str) -> tuple[float, float]:
        xs = self.values.get((row, column), {}).get(metric, [])
        if not xs:
            return math.nan, math.nan
        return statistics.fmean(xs), statistics.pstdev(xs) if len(xs) > 1 else 0.0

    def reference(self, name: str, column: str, metric: str) -> tuple[float, float]:
        """A reference predictor's mean ± std in ``column``: computed by every run on its
        own split (``ref/<name>/<metric>``), read from the first method's runs (the
        references depend only on the split, which every method of a column shares)."""
        first = self.spec.rows[0][0]
        return self.mean_std(first, column, f"{PREFIX}/{name}/{metric}")

    def references(self) -> list[str]:
        """The reference predictors with a value in at least one cell of the table."""
        return [
            name
            for name in LABELS
            if any(
                not math.isnan(self.reference(name, c, m)[0])
                for c, _ in self.spec.columns
                for m in self.spec.metrics
            )
        ]


def table_cells(spec: TableSpec, seeds: Sequence[int]) -> list[Cell]:
    return [
        Cell(SEP.join((spec.name, row, column)), (*spec.base, *row_o, *col_o), seed)
        for row, row_o in spec.rows
        for column, col_o in spec.columns
        for seed in seeds
    ]


def run_table(
    spec: TableSpec,
    base: Mapping[str, Any] | None,
    seeds: Sequence[int],
    registry: Registry,
    out_dir: Path,
    *,
    reporter: Reporter | None = None,
) -> TableResult:
    results = run_cells(base, table_cells(spec, seeds), registry, out_dir, reporter=reporter)
    return collect(spec, results)


def collect(spec: TableSpec, results: Sequence[CellResult]) -> TableResult:
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    run_dirs: dict[tuple[str, str], list[str]] = {}
    for result in results:
        _, row, column = result.cell.label.split(SEP)
        bucket = values.setdefault((row, column), {})
        for metric, value in result.record.metrics.items():
            bucket.setdefault(metric, []).append(float(value))
        run_dirs.setdefault((row, column), []).append(str(result.record.run_dir))
    return TableResult(spec, values, run_dirs)


def lower_is_better(metric: str) -> bool:
    """Error metrics (``mae``, ``rmse``, ``dual_mae``, ``target/rmse``...) go down."""
    return metric.split("@")[0].split("/")[-1].endswith(("mae", "rmse"))


def _fmt(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


#: (epochs-to-best metric, its budget, offset to make the first a count, stage name): the
#: training stages whose budget a table checks
BUDGETS = (
    ("best_epoch", "epoch_budget", 1.0, "training"),
    ("backbone_epochs", "epoch_budget", 0.0, "backbones"),
    ("stage0_epochs", "stage0_budget", 0.0, "stage 0"),
    ("stage2_epochs", "stage2_budget", 0.0, "stage 2"),
    ("generator_epochs", "stage2_budget", 0.0, "stage 2"),
)
#: a budget is enough when no best epoch falls in its last tenth
LAST_SHARE = 0.1


def short_budgets(result: TableResult) -> list[str]:
    """Cells whose best epoch (any seed) falls in the last 10% of its stage's budget: a
    longer budget might change their numbers. One entry per (row, column, stage)."""
    found = []
    for row, _ in result.spec.rows:
        for column, _ in result.spec.columns:
            bucket = result.values.get((row, column), {})
            for epochs, budget, offset, stage in BUDGETS:
                pairs = zip(bucket.get(epochs, []), bucket.get(budget, []), strict=False)
                late = [(e + offset, b) for e, b in pairs if e + offset > (1 - LAST_SHARE) * b]
                if late:
                    best, total = max(late)
                    found.append(f"{row} ({column}, {stage}: best epoch {best:.0f} of {total:.0f})")
    return found


def render_markdown(result: TableResult, seeds: Sequence[int]) -> str:
    """The table as Markdown: one row per method, a column per (condition, metric), then
    the reference predictors (global mean, item mean, user auxiliary mean, popularity)
    computed on the same splits.

    The best method of each column is bold (lowest for MAE/RMSE, highest otherwise); a
    method cell worse than the best reference of its column is marked ``†`` (below a
    reference: nothing personal learned), and a note under the table says which.
    """
    spec = result.spec
    header = ["method"] + [f"{c} {m}" for c, _ in spec.columns for m in spec.metrics]
    lines = [
        f"### {spec.title}",
        "",
        f"mean ± std over seeds {', '.join(map(str, seeds))}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    best: dict[tuple[str, str], float] = {}
    for column, _ in spec.columns:
        for metric in spec.metrics:
            means = [result.mean_std(r, column, metric)[0] for r, _ in spec.rows]
            means = [m for m in means if not math.isnan(m)]
            if means:
                lower = lower_is_better(metric)
                best[(column, metric)] = min(means) if lower else max(means)
    references = result.references()
    bar: dict[tuple[str, str], float] = {}
    for column, _ in spec.columns:
        for metric in spec.metrics:
            refs = [result.reference(n, column, metric)[0] for n in references]
            refs = [r for r in refs if not math.isnan(r)]
            if refs:
                bar[(column, metric)] = min(refs) if lower_is_better(metric) else max(refs)
    below: list[str] = []
    for row, _ in spec.rows:
        cells = [row]
        for column, _ in spec.columns:
            for metric in spec.metrics:
                mean, std = result.mean_std(row, column, metric)
                text = _fmt(mean, std)
                limit = bar.get((column, metric))
                if limit is not None and not math.isnan(mean):
                    worse = mean > limit if lower_is_better(metric) else mean < limit
                    if worse:
                        text += " †"
                        below.append(f"{row} ({column} {metric})")
                cells.append(f"**{text}**" if best.get((column, metric)) == mean else text)
        lines.append("| " + " | ".join(cells) + " |")
    for name in references:
        cells = [f"*reference: {LABELS[name]}*"]
        for column, _ in spec.columns:
            for metric in spec.metrics:
                mean, std = result.reference(name, column, metric)
                cells.append("" if math.isnan(mean) else _fmt(mean, std))
        lines.append("| " + " | ".join(cells) + " |")
    if below:
        lines += [
            "",
            "† below the best reference predictor of its column (it learned nothing a "
            "non-personalised reference does not have): " + "; ".join(below) + ".",
        ]
    checked = any(b in bucket for bucket in result.values.values() for _, b, _, _ in BUDGETS)
    late = short_budgets(result)
    if late:
        lines += ["", "Budget short (best epoch in the last 10% of it): " + "; ".join(late) + "."]
    elif checked:
        lines += ["", "Budget: every run's best epoch is before the last 10% of its budget."]
    return "\n".join(lines) + "\n"


def table_rows(result: TableResult) -> list[dict[str, Any]]:
    """Flat rows for CSV: method, condition, metric, mean, std, n."""
    rows = []
    first = result.spec.rows[0][0]
    labelled = [(row, row, "") for row, _ in result.spec.rows] + [
        (first, f"reference: {LABELS[name]}", f"{PREFIX}/{name}/") for name in result.references()
    ]
    for row, method, prefix in labelled:
        for column, _ in result.spec.columns:
            for metric in result.spec.metrics:
                mean, std = result.mean_std(row, column, prefix + metric)
                n = len(result.values.get((row, column), {}).get(prefix + metric, []))
                if prefix and not n:
                    continue
                rows.append(
                    {
                        "table": result.spec.name,
                        "method": method,
                        "condition": column,
                        "metric": metric,
                        "mean": mean,
                        "std": std,
                        "n": n,
                    }
                )
    return rows
