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

from cdr.progress import Reporter
from cdr.registry import Registry
from cdr.studies.cells import Cell, CellResult, run_cells

#: joins table, row and column into a cell label (row names may contain "/", as "w/o side")
SEP = " | "


@attrs.frozen
class TableSpec:
    """rows / columns: (label, overrides); metrics: metric keys shown per column."""

    name: str
    title: str
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    columns: tuple[tuple[str, tuple[str, ...]], ...]
    metrics: tuple[str, ...]
    base: tuple[str, ...] = ()


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


def render_markdown(result: TableResult, seeds: Sequence[int]) -> str:
    """The table as Markdown: one row per method, a column per (condition, metric).

    The best mean of each column is bold (lowest for MAE/RMSE, highest otherwise).
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
    for row, _ in spec.rows:
        cells = [row]
        for column, _ in spec.columns:
            for metric in spec.metrics:
                mean, std = result.mean_std(row, column, metric)
                text = _fmt(mean, std)
                cells.append(f"**{text}**" if best.get((column, metric)) == mean else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_rows(result: TableResult) -> list[dict[str, Any]]:
    """Flat rows for CSV: method, condition, metric, mean, std, n."""
    rows = []
    for row, _ in result.spec.rows:
        for column, _ in result.spec.columns:
            for metric in result.spec.metrics:
                mean, std = result.mean_std(row, column, metric)
                n = len(result.values.get((row, column), {}).get(metric, []))
                rows.append(
                    {
                        "table": result.spec.name,
                        "method": row,
                        "condition": column,
                        "metric": metric,
                        "mean": mean,
                        "std": std,
                        "n": n,
                    }
                )
    return rows
