"""``cdr sweep``: a grid over config keys (``generator.steps=2,5,10``), seeds, a table, a plot."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cdr.errors import ConfigError
from cdr.runs import atomic_write_bytes, atomic_write_text
from cdr.studies.cells import Cell, CellResult


def _split_values(text: str) -> list[str]:
    """Split ``a,b,[c,d]`` on top-level commas (brackets keep TOML lists whole)."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_grid(grid: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["generator.steps=2,5", "trainer.lr=1e-3,1e-2"]`` -> [(key, values), ...]."""
    axes = []
    for item in grid:
        key, sep, raw = item.partition("=")
        values = _split_values(raw)
        if not sep or not key.strip() or not values:
            raise ConfigError(f"--grid {item!r}: expected dotted.key=v1,v2,...")
        axes.append((key.strip(), values))
    return axes


def grid_cells(grid: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """The cartesian product of the grid axes, times the seeds."""
    axes = parse_grid(grid)
    cells: list[Cell] = []
    for combo in itertools.product(*(values for _, values in axes)):
        overrides = tuple(f"{key}={value}" for (key, _), value in zip(axes, combo, strict=True))
        label = ",".join(overrides) or "base"
        cells.extend(Cell(label, overrides, seed) for seed in seeds)
    return cells


def sweep_table(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """One row per cell: its overrides as columns, seed, and every metric."""
    rows = []
    for result in results:
        row: dict[str, Any] = {}
        for override in result.cell.overrides:
            key, _, value = override.partition("=")
            row[key] = value
        row["seed"] = result.cell.seed
        row.update(result.record.metrics)
        row["run_dir"] = str(result.record.run_dir)
        rows.append(row)
    return rows


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def plot_sweep(path: Path, rows: Sequence[Mapping[str, Any]], axis: str, metric: str) -> None:
    """Mean +- std of ``metric`` against the values of one grid ``axis`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups: dict[str, list[float]] = {}
    for row in rows:
        if metric in row:
            groups.setdefault(str(row[axis]), []).append(float(row[metric]))
    labels = list(groups)
    means = np.array([np.mean(groups[x]) for x in labels])
    stds = np.array([np.std(groups[x]) for x in labels])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(range(len(labels)), means, yerr=stds, marker="o", capsize=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
