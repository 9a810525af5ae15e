"""Writing and reading a run's results: ``metrics.json`` and per-user metrics as Parquet.

``per_user.parquet`` holds one row per (slice, user): columns ``slice`` (str), ``user``
(int64) and one float64 column per metric (NaN where a slice lacks that metric). Both files are
written atomically through ``cdr.runs``. Reading also accepts one ``per_user_<slice>.parquet``
per slice (columns ``user`` and the metrics), as some pipelines write them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from cdr.errors import RunError
from cdr.evaluation.ranking import RankingResult
from cdr.runs import METRICS, read_json, write_json, write_table

PER_USER = "per_user.parquet"


def flatten(results: Mapping[str, RankingResult]) -> dict[str, float]:
    """``{"<slice>/<metric>": mean}`` for every slice and metric (e.g. for metrics.json)."""
    return {
        f"{name}/{metric}": value
        for name, result in results.items()
        for metric, value in result.summary().items()
    }


def write_results(
    run_dir: Path,
    metrics: Mapping[str, float],
    per_user: Mapping[str, RankingResult] | None = None,
) -> None:
    """Write ``metrics.json`` (non-finite values as null) and, if given, ``per_user.parquet``."""
    clean: dict[str, float | None] = {}
    for key, value in metrics.items():
        number = float(value)
        clean[key] = number if math.isfinite(number) else None
    if per_user:
        names = list(dict.fromkeys(m for r in per_user.values() for m in r.per_user))
        slices: list[str] = []
        users: list[torch.Tensor] = []
        columns: dict[str, list[torch.Tensor]] = {m: [] for m in names}
        for slice_name, result in per_user.items():
            slices.extend([slice_name] * len(result))
            users.append(result.users.cpu().to(torch.long))
            for m in names:
                values = result.per_user.get(m)
                columns[m].append(
                    torch.full((len(result),), math.nan, dtype=torch.float64)
                    if values is None
                    else values.cpu().to(torch.float64)
                )
        table: dict[str, torch.Tensor | list[str]] = {"slice": slices, "user": torch.cat(users)}
        table.update({m: torch.cat(parts) for m, parts in columns.items()})
        write_table(run_dir / PER_USER, table)
    write_json(run_dir / METRICS, clean)


@attrs.frozen(eq=False)
class RunResults:
    """What a finished run directory holds: flat metrics and per-user metrics by slice."""

    path: Path
    metrics: dict[str, float]
    per_user: dict[str, RankingResult]

    @property
    def name(self) -> str:
        return self.path.name


def read_per_user(path: Path) -> dict[str, RankingResult]:
    """Per-user metrics by slice from a ``per_user.parquet`` written by :func:`write_results`."""
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable Parquet file ({exc})") from exc
    if "slice" not in table.column_names and "user" in table.column_names:  # one slice a file
        name = path.stem.removeprefix("per_user_")
        table = table.append_column("slice", pa.array([name] * table.num_rows))
    if not {"slice", "user"} <= set(table.column_names):
        raise RunError(f"{path}: expected columns 'slice' and 'user'")
    slice_column = table.column("slice")
    users = torch.tensor(table.column("user").to_numpy(), dtype=torch.long)
    metric_names = [c for c in table.column_names if c not in ("slice", "user")]
    values = {
        m: torch.tensor(table.column(m).to_numpy(zero_copy_only=False), dtype=torch.float64)
        for m in metric_names
    }
    out: dict[str, RankingResult] = {}
    for name in slice_column.unique().to_pylist():
        rows = torch.from_numpy(
            pc.equal(slice_column, name).to_numpy(zero_copy_only=False).astype(bool)
        )
        kept = {m: v[rows] for m, v in values.items() if not bool(torch.isnan(v[rows]).all())}
        out[name] = RankingResult(users[rows], kept)
    return out


def read_results(run_dir: Path) -> RunResults:
    """Load ``metrics.json`` (required) and ``per_user.parquet`` (optional) of a run."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a run directory")
    raw = read_json(run_dir / METRICS)
    metrics: dict[str, float] = {}
    for key, value in raw.items():
        if value is None:
            metrics[key] = math.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            metrics[key] = float(value)
        else:
            raise RunError(f"{run_dir / METRICS}: {key!r} is {value!r}, not a number")
    per_user_path = run_dir / PER_USER
    per_user = read_per_user(per_user_path) if per_user_path.exists() else {}
    for path in sorted(run_dir.glob("per_user_*.parquet")):
        per_user.update(read_per_user(path))
    return RunResults(run_dir, metrics, per_user)
