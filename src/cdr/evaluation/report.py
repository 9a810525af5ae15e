"""Side-by-side views of several runs: a rich table of their metrics and NDCG@N curves (PNG).

Curves come from ``metrics.json`` keys ``"[<slice>/]ndcg@<N>"``: every slice with at least
two cut-offs gets one panel, one line per run (MICRec Figure 2 uses N = 5..100).
"""

from __future__ import annotations

import fnmatch
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from cdr.evaluation.results import RunResults
from cdr.runs import atomic_write_bytes

_NDCG = re.compile(r"^(?:(?P<slice>.+)/)?ndcg@(?P<n>\d+)$")
LOWER_IS_BETTER = ("mae", "rmse", "loss")


def run_labels(runs: Sequence[RunResults]) -> list[str]:
    """Directory names, or full paths where two runs share a name."""
    names = [r.name for r in runs]
    return [str(r.path) if names.count(r.name) > 1 else r.name for r in runs]


def _lower_is_better(metric: str) -> bool:
    leaf = metric.rsplit("/", 1)[-1].split("@", 1)[0]
    return leaf in LOWER_IS_BETTER


def metrics_table(runs: Sequence[RunResults], pattern: str | None = None) -> Table:
    """One row per metric key (union over runs, glob-filtered by ``pattern``), a column per run.

    The best value of each row is bold (lowest for errors such as MAE/RMSE, else highest).
    """
    labels = run_labels(runs)
    keys = list(dict.fromkeys(k for r in runs for k in r.metrics))
    if pattern:
        keys = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
    table = Table(title="cdr report", show_lines=False)
    table.add_column("metric", style="bold")
    for label in labels:
        table.add_column(label, justify="right")
    for key in keys:
        values = [r.metrics.get(key, math.nan) for r in runs]
        finite = [v for v in values if math.isfinite(v)]
        best = (min(finite) if _lower_is_better(key) else max(finite)) if finite else None
        cells = []
        for v in values:
            text = f"{v:.4f}" if math.isfinite(v) else "-"
            cells.append(f"[bold green]{text}[/]" if len(runs) > 1 and v == best else text)
        table.add_row(key, *cells)
    return table


def ndcg_curves(metrics: Mapping[str, float]) -> dict[str, list[tuple[int, float]]]:
    """``{slice: [(N, NDCG@N), ...]}`` sorted by N ("" for keys without a slice)."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for key, value in metrics.items():
        match = _NDCG.match(key)
        if match and math.isfinite(value):
            curves.setdefault(match["slice"] or "", []).append((int(match["n"]), value))
    return {name: sorted(points) for name, points in curves.items()}


def plot_ndcg_curves(runs: Sequence[RunResults], path: Path) -> bool:
    """Write a PNG of NDCG@N against N (panel per slice, line per run); False if no curve."""
    per_run = [ndcg_curves(r.metrics) for r in runs]
    slices = [
        name
        for name in dict.fromkeys(n for curves in per_run for n in curves)
        if any(len(curves.get(name, [])) >= 2 for curves in per_run)
    ]
    if not slices:
        return False
    cols = min(3, len(slices))
    rows = math.ceil(len(slices) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, name in zip(axes, slices, strict=False):
        for label, curves in zip(run_labels(runs), per_run, strict=True):
            points = curves.get(name, [])
            if points:
                ax.plot(
                    [n for n, _ in points], [v for _, v in points], marker="o", ms=3, label=label
                )
        ax.set_title(name or "NDCG@N", fontsize=9)
        ax.set_xlabel("N")
        ax.set_ylabel("NDCG@N")
        ax.grid(alpha=0.3)
    for ax in axes[len(slices) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return True
