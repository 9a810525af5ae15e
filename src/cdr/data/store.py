"""Built datasets on disk: Parquet tables with explicit schemas plus a JSON manifest.

Layout of a dataset directory (written to a temp dir, then renamed: never half-written)::

    manifest.json              counts, filters applied, source, provider config, content hash,
                               fingerprints of the raw input files
    users.parquet              user_id                      (row = global user index)
    {source,target}/items.parquet         item_id, title, description, categories, image
    {source,target}/interactions.parquet  user, item, rating, timestamp, review
    {source,target}/images/...            only when the provider draws images (synthetic)

``load_dataset`` builds through the registered provider once per config and raw input
(directory name = provider + hash of the config and of the fingerprints of the raw files the
provider reads, its ``inputs()``), and afterwards reloads the Parquet tables without parsing
the raw files again: a raw file whose content changes gets a new key, so it is rebuilt. A
fingerprint is (name, size, sha256 of the bytes, streamed); the sha256 is remembered in
``<cache_root>/.fingerprints.json`` by (size, mtime_ns, ctime_ns, inode), so an unchanged
file is not re-hashed on every load. Image paths stay relative to the domain root recorded in
the manifest.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cdr.components import BuildContext, DatasetConfig
from cdr.data.filters import FilterConfig, FilterReport, apply_filters, check_usable
from cdr.data.records import CrossDomainDataset, Domain, Interactions, ItemContent
from cdr.data.summary import summarize
from cdr.data.validate import RatingScale, one_line
from cdr.errors import DataError, DatasetFormatError
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry

FORMAT = "cdr-dataset"
STORE_VERSION = 1
MANIFEST = "manifest.json"
FINGERPRINTS = ".fingerprints.json"
ROLES = ("source", "target")

USER_SCHEMA = pa.schema([pa.field("user_id", pa.string(), nullable=False)])
ITEM_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("title", pa.string(), nullable=False),
    pa.field("description", pa.string(), nullable=False),
    pa.field("categories", pa.list_(pa.string()), nullable=False),
    pa.field("image", pa.string()),  # relative to the domain root; null = missing
])
INTERACTION_SCHEMA = pa.schema([
    pa.field("user", pa.int64(), nullable=False),
    pa.field("item", pa.int64(), nullable=False),
    pa.field("rating", pa.float32(), nullable=False),
    pa.field("timestamp", pa.int64(), nullable=False),
    pa.field("review", pa.string()),  # null when the dataset has no reviews
])


def config_data(config: DatasetConfig) -> dict[str, Any]:
    """The provider config as plain JSON-able data (``kind`` first)."""
    data = attrs.asdict(config)  # type: ignore[arg-type]
    return json.loads(json.dumps(data, default=str))  # type: ignore[no-any-return]


@attrs.frozen
class Fingerprint:
    """One raw input file: resolved path, size, mtime_ns and the sha256 of its bytes."""

    path: str
    size: int
    mtime_ns: int
    sha256: str

    def key(self) -> dict[str, Any]:
        """What enters the cache key: the content, not where or when it was written."""
        return {"name": Path(self.path).name, "size": self.size, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprints(paths: Sequence[Path], memo: dict[str, Any] | None = None) -> list[Fingerprint]:
    """Fingerprints of ``paths`` (in order). ``memo`` maps a resolved path to the stat it had
    and its sha256; an entry whose stat still matches is reused, others are (re)computed and
    stored in it. DataError / DatasetFormatError naming a missing or unreadable file."""
    memo = {} if memo is None else memo
    out: list[Fingerprint] = []
    for path in paths:
        resolved = str(path.resolve())
        try:
            st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                raise DatasetFormatError(f"{path}: is a directory, expected a file")
            if not stat.S_ISREG(st.st_mode):
                raise DatasetFormatError(f"{path}: not a regular file")
            state = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
            entry = memo.get(resolved)
            if isinstance(entry, dict) and entry.get("stat") == state and isinstance(
                    entry.get("sha256"), str):
                digest = entry["sha256"]
            else:
                digest = _sha256(path)
                memo[resolved] = {"stat": state, "sha256": digest}
        except FileNotFoundError as exc:
            raise DataError(f"{path}: no such file") from exc
        except OSError as exc:
            raise DatasetFormatError(one_line(f"{path}: unreadable ({exc.strerror or exc})")) \
                from exc
        out.append(Fingerprint(resolved, st.st_size, st.st_mtime_ns, digest))
    return out


def provider_inputs(provider: Any) -> list[Path]:
    """The raw files a provider reads (its optional ``inputs()``; none for generated data)."""
    inputs = getattr(provider, "inputs", None)
    return [Path(p) for p in inputs()] if callable(inputs) else []


def _load_memo(cache_root: Path) -> dict[str, Any]:
    try:
        memo = json.loads((cache_root / FINGERPRINTS).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _save_memo(cache_root: Path, memo: dict[str, Any]) -> None:
    """Best effort (the memo only saves re-hashing): a temp file renamed into place."""
    try:
        fd, name = tempfile.mkstemp(dir=cache_root, prefix=f"{FINGERPRINTS}.tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(memo, fh, sort_keys=True)
        os.replace(name, cache_root / FINGERPRINTS)
    except OSError:
        Path(name).unlink(missing_ok=True)


def dataset_key(config: DatasetConfig, inputs: Sequence[Fingerprint] = ()) -> str:
    """A stable hash of the provider config, the store format and the raw inputs' content."""
    data: dict[str, Any] = {"format": STORE_VERSION, "config": config_data(config)}
    if inputs:
        data["inputs"] = [f.key() for f in inputs]
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_dir(config: DatasetConfig, cache_root: Path,
                inputs: Sequence[Fingerprint] = ()) -> Path:
    """Where ``config``'s dataset built from ``inputs`` lives under ``cache_root``."""
    return cache_root / f"{config.kind}-{dataset_key(config, inputs)[:12]}"


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _root_entry(root: Path | None, directory: Path) -> str | None:
    if root is None:
        return None
    root = root.resolve()
    try:
        return root.relative_to(directory.resolve()).as_posix()
    except ValueError:
        return str(root)


def write_tables(dataset: CrossDomainDataset, directory: Path) -> dict[str, Any]:
    """Write the Parquet tables into ``directory``; returns the manifest's domain entries."""
    _write(pa.table({"user_id": list(dataset.user_ids)}, schema=USER_SCHEMA),
           directory / "users.parquet")
    entries: dict[str, Any] = {}
    for role in ROLES:
        domain: Domain = getattr(dataset, role)
        items = domain.items
        _write(pa.table({
            "item_id": list(domain.item_ids),
            "title": list(items.title),
            "description": list(items.description),
            "categories": [list(c) for c in items.categories],
            "image": list(items.image),
        }, schema=ITEM_SCHEMA), directory / role / "items.parquet")
        inter = domain.interactions
        reviews = list(domain.reviews) if domain.reviews is not None else [None] * len(inter)
        _write(pa.table({
            "user": inter.user.numpy(),
            "item": inter.item.numpy(),
            "rating": inter.rating.to(torch.float32).numpy(),
            "timestamp": inter.timestamp.numpy(),
            "review": reviews,
        }, schema=INTERACTION_SCHEMA), directory / role / "interactions.parquet")
        entries[role] = {
            "name": domain.name,
            "root": _root_entry(domain.root, directory),
            "has_reviews": domain.reviews is not None,
        }
    return entries


def content_hash(directory: Path) -> str:
    """sha256 over the dataset's Parquet files (sorted by relative path)."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.parquet")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _finish(directory: Path, final: Path) -> Path:
    """Rename the complete temp dir into place (another process may have won the race)."""
    try:
        os.rename(directory, final)
    except OSError:
        if (final / MANIFEST).exists():
            shutil.rmtree(directory, ignore_errors=True)
            return final
        raise
    return final


def save_dataset(
    dataset: CrossDomainDataset,
    path: Path,
    *,
    source: str = "",
    config: dict[str, Any] | None = None,
    filters: list[FilterReport] | None = None,
    tmp: Path | None = None,
    inputs: Sequence[Fingerprint] = (),
) -> Path:
    """Write ``dataset`` atomically to the new directory ``path``; returns ``path``.

    ``tmp``: a temp directory (sibling of ``path``) already holding provider files such as
    images; the tables and manifest are added to it before it is renamed into place.
    """
    if path.exists():
        raise DataError(f"{path}: already exists; refusing to overwrite a built dataset")
    path.parent.mkdir(parents=True, exist_ok=True)
    work = tmp or Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        domains = write_tables(dataset, work)
        manifest = {
            "format": FORMAT,
            "version": STORE_VERSION,
            "name": dataset.name,
            "source": source,
            "config": config or {},
            "filters": [r.as_dict() for r in filters or []],
            "counts": summarize(dataset),
            "domains": domains,
            "content_hash": content_hash(work),
            "inputs": [attrs.asdict(f) for f in inputs],
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return _finish(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a built dataset directory; DataError naming the file when unusable."""
    file = path / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{file}: missing (not a built cdr dataset directory)") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != STORE_VERSION:
        raise DataError(
            f"{file}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {STORE_VERSION}",
            hint="rebuild it with `cdr datasets build`",
        )
    return manifest


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: missing table of a built dataset") from exc
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: unreadable Parquet ({exc})") from exc
    if not table.schema.equals(schema, check_metadata=False):
        raise DataError(f"{path}: schema {table.schema.names} does not match {schema.names}")
    return table


def _tensor(table: pa.Table, name: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(table.column(name).to_numpy().copy()).to(dtype)


def read_dataset(path: Path) -> CrossDomainDataset:
    """Load a built dataset directory (no raw file is parsed)."""
    manifest = read_manifest(path)
    users = _read(path / "users.parquet", USER_SCHEMA).column("user_id").to_pylist()
    domains: dict[str, Domain] = {}
    for role in ROLES:
        entry = manifest["domains"][role]
        items = _read(path / role / "items.parquet", ITEM_SCHEMA)
        inter = _read(path / role / "interactions.parquet", INTERACTION_SCHEMA)
        root = entry.get("root")
        domains[role] = Domain(
            name=entry["name"],
            num_users=len(users),
            item_ids=tuple(items.column("item_id").to_pylist()),
            interactions=Interactions(
                _tensor(inter, "user", torch.long),
                _tensor(inter, "item", torch.long),
                _tensor(inter, "rating", torch.float32),
                _tensor(inter, "timestamp", torch.long),
            ),
            items=ItemContent(
                title=tuple(items.column("title").to_pylist()),
                description=tuple(items.column("description").to_pylist()),
                categories=tuple(tuple(c) for c in items.column("categories").to_pylist()),
                image=tuple(items.column("image").to_pylist()),
            ),
            reviews=tuple(inter.column("review").to_pylist()) if entry["has_reviews"] else None,
            root=None if root is None else (path / root).resolve(),
            clipped_ratings=int(manifest["counts"][role].get("clipped_ratings", 0)),
        )
    return CrossDomainDataset(manifest["name"], tuple(users), domains["source"],
                              domains["target"])


def _call_load(provider: Any, reporter: Reporter, workdir: Path) -> CrossDomainDataset:
    """``provider.load``; providers that write files (images) accept ``workdir``."""
    if "workdir" in inspect.signature(provider.load).parameters:
        dataset: CrossDomainDataset = provider.load(reporter, workdir=workdir)
    else:
        dataset = provider.load(reporter)
    if not isinstance(dataset, CrossDomainDataset):
        raise DataError(f"dataset provider returned {type(dataset).__name__}, "
                        "not a CrossDomainDataset")
    return dataset


def _clip_reports(dataset: CrossDomainDataset, config: DatasetConfig) -> list[FilterReport]:
    """One report per domain whose ratings were clipped on loading (``clip_ratings``)."""
    scale = (RatingScale.of(config).describe() if hasattr(config, "rating_min")
             else "the declared scale")
    return [FilterReport(f"{domain.clipped_ratings} rating(s) clipped into {scale}",
                         domain.name, 0)
            for domain in (dataset.source, dataset.target) if domain.clipped_ratings]


def build_dataset(
    config: DatasetConfig,
    registry: Registry,
    *,
    cache_root: Path = Path(".cache/datasets"),
    reporter: Reporter | None = None,
    force: bool = False,
) -> Path:
    """Build ``config``'s dataset into the cache unless already there; returns its directory.

    The cache directory is keyed by the config and the fingerprints of the provider's raw
    input files, so changing a file rebuilds. The provider's ``filters`` (a ``FilterConfig``
    field, when the config has one) are applied here and their reports recorded in the
    manifest, with one report per domain whose ratings were clipped. A failing build leaves
    nothing in ``cache_root``.
    """
    component = registry.get("datasets", config.kind)
    provider = component.build(config, BuildContext())
    paths = provider_inputs(provider)
    memo = _load_memo(cache_root)
    known = dict(memo)
    inputs = fingerprints(paths, memo)
    final = dataset_dir(config, cache_root, inputs)
    if (final / MANIFEST).exists() and not force:
        if memo != known:
            _save_memo(cache_root, memo)
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{final.name}.tmp-"))
    try:
        dataset = _call_load(provider, reporter or null_reporter, tmp)
        now = fingerprints(paths, memo)
        for file, before, after in zip(paths, inputs, now, strict=True):
            if after.sha256 != before.sha256:
                raise DataError(f"{file}: changed while the dataset was being built; "
                                "build again")
        check_usable(dataset, structure=True)
        reports = _clip_reports(dataset, config)
        filters = getattr(config, "filters", None)
        if isinstance(filters, FilterConfig):
            dataset, applied = apply_filters(dataset, filters)
            reports += applied
        if force and final.exists():
            shutil.rmtree(final)
        if (final / MANIFEST).exists() and not force:
            # another process built the same dataset meanwhile: the same key, the same data
            shutil.rmtree(tmp, ignore_errors=True)
            return final
        path = save_dataset(
            dataset, final, source=str(getattr(provider, "source", config.kind)),
            config=config_data(config), filters=reports, tmp=tmp, inputs=inputs,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if paths:
        _save_memo(cache_root, memo)
    return path


def load_dataset(
    config: DatasetConfig,
    registry: Registry,
    *,
    cache_root: Path = Path(".cache/datasets"),
    reporter: Reporter | None = None,
) -> CrossDomainDataset:
    """The dataset ``config`` names: built (and cached) on first use, then reloaded."""
    return read_dataset(build_dataset(config, registry, cache_root=cache_root,
                                      reporter=reporter))
