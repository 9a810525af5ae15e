"""``cdr report RUN...`` and ``cdr compare RUN_A RUN_B``: read finished runs, render results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cdr.cli.common import console, user_errors
from cdr.errors import RunError
from cdr.evaluation.report import metrics_table, plot_ndcg_curves
from cdr.evaluation.results import RunResults, read_results
from cdr.evaluation.significance import METHODS, Method, paired_test

DEFAULT_SLICE = "all-users/all-items"


@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to show side by side.")],
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="PNG for the NDCG@N curves (default: ndcg_curves.png next to the runs)."
        ),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option("--metrics", "-m", help="Glob on metric names, e.g. '*ndcg@20'.")
    ] = None,
) -> None:
    """Show the metrics of several runs side by side and plot their NDCG@N curves."""
    loaded = [read_results(run) for run in runs]
    console.print(metrics_table(loaded, metrics))
    if plot is None:
        parent = Path(os.path.commonpath([r.resolve() for r in runs]))
        plot = (parent if len(runs) > 1 else parent.parent) / "ndcg_curves.png"
    if plot_ndcg_curves(loaded, plot):
        console.print(f"NDCG@N curves: {plot}")
    else:
        console.print("[dim]no NDCG@N curve (fewer than two ndcg@N values per slice)[/]")


def _pick_slice(a: RunResults, b: RunResults, wanted: str | None) -> str:
    common = [s for s in a.per_user if s in b.per_user]
    if wanted is not None:
        if wanted not in common:
            raise RunError(
                f"slice {wanted!r} is not in the per-user metrics of both runs",
                hint=f"common slices: {', '.join(common) or 'none'}",
            )
        return wanted
    if len(common) == 1:
        return common[0]
    # "all-users/all-items", possibly per domain ("target/all-users/all-items"): prefer target
    overall = [s for s in common if s == DEFAULT_SLICE or s.endswith("/" + DEFAULT_SLICE)]
    for candidate in (DEFAULT_SLICE, f"target/{DEFAULT_SLICE}"):
        if candidate in overall:
            return candidate
    if len(overall) == 1:
        return overall[0]
    raise RunError(
        f"{a.path} and {b.path} share {len(common)} slices; choose one with --slice",
        hint=f"common slices: {', '.join(common) or 'none (no per_user.parquet?)'}",
    )


@user_errors
def compare(
    run_a: Annotated[Path, typer.Argument(help="First run directory.")],
    run_b: Annotated[Path, typer.Argument(help="Second run directory.")],
    metric: Annotated[str, typer.Option("--metric", help="Per-user metric to test.")] = "ndcg@20",
    slice_: Annotated[
        str | None,
        typer.Option(
            "--slice",
            help=f"Evaluation slice (default: the only one, else [target/]{DEFAULT_SLICE}).",
        ),
    ] = None,
    test: Annotated[str, typer.Option("--test", help="Paired test: t or wilcoxon.")] = "t",
) -> None:
    """Paired significance test of one per-user metric between two runs (common users)."""
    if test not in METHODS:
        raise typer.BadParameter(
            f"{test!r} is not one of {', '.join(METHODS)}", param_hint="--test"
        )
    method: Method = "t" if test == "t" else "wilcoxon"
    a, b = read_results(run_a), read_results(run_b)
    name = _pick_slice(a, b, slice_)
    result = paired_test(a.per_user[name], b.per_user[name], metric, method)
    table = Table(title=f"{metric} on {name}: paired {'t-test' if method == 't' else 'Wilcoxon'}")
    for column in ("users", f"A: {a.name}", f"B: {b.name}", "A - B", "statistic", "p-value"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.n),
        f"{result.mean_a:.4f}",
        f"{result.mean_b:.4f}",
        f"{result.mean_a - result.mean_b:+.4f}",
        f"{result.statistic:.4g}",
        f"{result.pvalue:.3g}",
    )
    console.print(table)
