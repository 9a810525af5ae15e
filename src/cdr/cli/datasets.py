"""``cdr datasets list|build|describe``: registered providers, building, summary tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from rich.table import Table

from cdr.cli.common import SetOpt, console, reporter, user_errors
from cdr.components import DatasetConfig
from cdr.config import SplitConfig
from cdr.config.loading import apply_overrides, format_errors, make_converter
from cdr.data.splits import cold_start_split
from cdr.data.store import MANIFEST, build_dataset, read_dataset, read_manifest
from cdr.errors import CdrError, ConfigError
from cdr.registry import Registry

datasets_app = typer.Typer(
    help="List, build and describe cross-domain datasets.", no_args_is_help=True
)

CacheOpt = Annotated[
    Path, typer.Option("--cache-root", help="Where built datasets are kept.", file_okay=False)
]
DEFAULT_CACHE = Path(".cache/datasets")


def dataset_config(name: str, overrides: list[str], registry: Registry) -> DatasetConfig:
    """The provider config for ``name`` with ``key=value`` overrides (``dataset.`` optional)."""
    data = apply_overrides({"kind": name}, [o.removeprefix("dataset.") for o in overrides])
    data["kind"] = name
    try:
        cfg: DatasetConfig = make_converter(registry).structure(data, DatasetConfig)
    except (ClassValidationError, ForbiddenExtraKeysError, ValueError, TypeError) as exc:
        raise ConfigError("; ".join(format_errors(exc, "$.dataset"))) from exc
    return cfg


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def summary_table(manifest: dict[str, Any], cold: dict[str, float] | None = None) -> Table:
    """Users / items / interactions per domain, overlap / side / cold counts, sparsity."""
    counts = manifest["counts"]
    src, tgt = counts["source"], counts["target"]
    table = Table(title=f"dataset {manifest['name']}", caption=manifest.get("source") or None)
    table.add_column("", style="bold")
    table.add_column(f"auxiliary: {src['name']}", justify="right")
    table.add_column(f"target: {tgt['name']}", justify="right")
    for key in (
        "users",
        "items",
        "interactions",
        "sparsity",
        "mean_rating",
        "items_with_image",
        "with_reviews",
    ):
        table.add_row(key.replace("_", " "), _fmt(src[key]), _fmt(tgt[key]))
    table.add_section()
    table.add_row("all users", _fmt(counts["users"]), "")
    table.add_row("overlapping users", _fmt(counts["overlapping_users"]), "")
    table.add_row("side users (target-only)", "", _fmt(counts["side_users"]))
    table.add_row("auxiliary-only users", _fmt(counts["source_only_users"]), "")
    if cold is not None:
        table.add_row(f"cold-start test users (beta {cold['beta']:g})", "", _fmt(int(cold["test"])))
        table.add_row(
            "train / val overlapping users", "", f"{int(cold['train']):,} / {int(cold['val']):,}"
        )
    return table


def filters_table(manifest: dict[str, Any]) -> Table | None:
    reports = manifest.get("filters", [])
    if not reports:
        return None
    table = Table(title="filters applied")
    for column in ("filter", "domain", "removed interactions", "removed items"):
        table.add_column(column, justify="right" if "removed" in column else "left")
    for r in reports:
        table.add_row(
            r["filter"], r["domain"], _fmt(r["removed_interactions"]), _fmt(r["removed_items"])
        )
    return table


def _cold(path: Path, beta: float) -> dict[str, float] | None:
    try:
        split = cold_start_split(read_dataset(path), SplitConfig(beta=beta))
    except CdrError:
        return None
    return {
        "beta": beta,
        "test": int(split.test_users.numel()),
        "train": int(split.train_users.numel()),
        "val": int(split.val_users.numel()),
    }


def _show(path: Path, beta: float) -> None:
    manifest = read_manifest(path)
    console.print(summary_table(manifest, _cold(path, beta)))
    extra = filters_table(manifest)
    if extra is not None:
        console.print(extra)
    console.print(f"[dim]{path}  content hash {manifest['content_hash'][:16]}[/]")


BetaOpt = Annotated[float, typer.Option("--beta", help="Cold-start fraction for the counts.")]


@datasets_app.command("list")
@user_errors
def list_(cache_root: CacheOpt = DEFAULT_CACHE) -> None:
    """Registered dataset providers and the datasets built under --cache-root."""
    registry = Registry()
    table = Table(title="dataset providers")
    table.add_column("name", style="cyan")
    table.add_column("origin")
    table.add_column("summary")
    for origin in registry.origins("datasets"):
        try:
            summary = registry.get("datasets", origin.name).summary
        except CdrError as exc:
            summary = f"[red]{exc}[/]"
        where = "built-in" if origin.builtin else f"plugin: {origin.distribution}"
        table.add_row(origin.name, where, summary)
    console.print(table)
    built = (
        sorted(p.parent for p in cache_root.glob(f"*/{MANIFEST}")) if cache_root.is_dir() else []
    )
    if built:
        table = Table(title=f"built datasets in {cache_root}")
        for column in ("directory", "name", "users", "interactions (aux / target)"):
            table.add_column(column)
        for path in built:
            try:
                counts = read_manifest(path)["counts"]
            except CdrError as exc:
                table.add_row(path.name, f"[red]{exc}[/]", "", "")
                continue
            table.add_row(
                path.name,
                read_manifest(path)["name"],
                _fmt(counts["users"]),
                f"{counts['source']['interactions']:,} / {counts['target']['interactions']:,}",
            )
        console.print(table)


@datasets_app.command("build")
@user_errors
def build(
    name: Annotated[str, typer.Argument(help="A registered dataset provider.")],
    set_: SetOpt = None,
    cache_root: CacheOpt = DEFAULT_CACHE,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
    beta: BetaOpt = 0.2,
) -> None:
    """Build dataset NAME (e.g. synthetic, ml-100k-genres) and show its summary."""
    registry = Registry()
    cfg = dataset_config(name, set_ or [], registry)
    with reporter() as report:
        path = build_dataset(cfg, registry, cache_root=cache_root, reporter=report, force=force)
    _show(path, beta)


@datasets_app.command("describe")
@user_errors
def describe(
    path: Annotated[Path, typer.Argument(help="A built dataset directory.", file_okay=False)],
    beta: BetaOpt = 0.2,
) -> None:
    """Summary table of a built dataset directory."""
    _show(path, beta)


@datasets_app.command("export-split")
@user_errors
def export_split(
    source: Annotated[
        Path | None,
        typer.Argument(help="A run directory (its config.toml) or an experiment config; "
                       "omitted: the packaged default with --set overrides."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory to write the files into.")] = ...,  # type: ignore[assignment]
    format_: Annotated[
        str, typer.Option("--format", help="File format (recbole: benchmark .inter files).")
    ] = "recbole",
    name: Annotated[
        str | None, typer.Option(help="File name stem (default: the target domain's name).")
    ] = None,
    set_: SetOpt = None,
    cache_root: CacheOpt = DEFAULT_CACHE,
) -> None:
    """Write the split of a run or config as RecBole benchmark files (deterministic bytes)."""
    from cdr.composition import plan
    from cdr.config import load_experiment
    from cdr.data.recbole_split import default_name, split_files, write_split_files
    from cdr.data.store import load_dataset
    from cdr.runs import CONFIG

    if format_ != "recbole":
        raise ConfigError(f"--format: {format_!r} is not one of recbole")
    registry = Registry()
    config = source / CONFIG if source is not None and source.is_dir() else source
    cfg = load_experiment(config, registry, set_ or [])
    protocol = plan(cfg, registry)
    with reporter() as report:
        dataset = load_dataset(cfg.dataset, registry, cache_root=cache_root, reporter=report)
    split = protocol.split(dataset, cfg.split)
    stem = name or default_name(dataset)
    about: dict[str, Any] = {
        "dataset": dataset.name,
        "split": cfg.split.kind,
        **{k: v for k, v in protocol.describe().items() if k != "stages"},
    }
    paths = write_split_files(split_files(split, dataset, stem), out, stem, about)
    table = Table(title=f"{protocol.name} split of {dataset.name} -> {out}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for path in paths:
        table.add_row(path.name, f"{path.stat().st_size:,}")
    console.print(table)
