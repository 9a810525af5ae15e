"""RecBole atomic files (``.inter``, ``.item``, ``.user``) and the ``recbole-atomic`` provider.

Format: tab-separated text, first line a header of ``name:type`` fields with type one of
``token``, ``token_seq`` (space-separated tokens), ``float``, ``float_seq``. A cross-domain
dataset is two RecBole datasets (one per domain) sharing user ids, laid out as RecBole does:
``<directory>/<name>/<name>.inter`` (or ``<directory>/<name>.inter``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cdr.components import BuildContext, Component, DatasetConfig
from cdr.data.assemble import ItemMeta, RawDomain, assemble
from cdr.data.filters import FilterConfig
from cdr.data.records import CrossDomainDataset
from cdr.errors import DataError, DatasetFormatError
from cdr.progress import Reporter

TYPES = ("token", "token_seq", "float", "float_seq")


@attrs.frozen(eq=False)
class AtomicTable:
    """Columns of one atomic file by field name (token -> str, token_seq -> tuple[str],
    float -> float, float_seq -> tuple[float])."""

    path: Path
    types: dict[str, str]
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            known = ", ".join(self.columns)
            raise DatasetFormatError(f"{self.path}: no field {name!r} (fields: {known})")
        return self.columns[name]


def _convert(value: str, kind: str, path: Path, line: int, name: str) -> Any:
    try:
        if kind == "token":
            return value
        if kind == "token_seq":
            return tuple(value.split())
        if kind == "float":
            return float(value)
        return tuple(float(v) for v in value.split())
    except ValueError:
        raise DatasetFormatError(
            f"{path}:{line}: field {name!r}: {value!r} is not a {kind}"
        ) from None


def read_atomic(path: Path) -> AtomicTable:
    """Parse one atomic file; DatasetFormatError naming file, line and field on bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DatasetFormatError(f"{path}:1: empty file (expected a name:type header)")
    names: list[str] = []
    types: dict[str, str] = {}
    for field in lines[0].split("\t"):
        name, sep, kind = field.strip().rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise DatasetFormatError(
                f"{path}:1: header field {field!r} is not name:type "
                f"(type one of {', '.join(TYPES)})"
            )
        names.append(name)
        types[name] = kind
    columns: dict[str, list[Any]] = {name: [] for name in names}
    width = len(names)
    converters = [(name, types[name], columns[name]) for name in names]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != width:
            raise DatasetFormatError(
                f"{path}:{number}: expected {width} tab-separated fields, got {len(values)}"
            )
        for (name, kind, column), value in zip(converters, values, strict=True):
            column.append(value if kind == "token" else _convert(value, kind, path, number,
                                                                   name))
    return AtomicTable(path, types, columns)


def find_file(directory: Path, name: str, suffix: str) -> Path | None:
    """``<dir>/<name>/<name>.<suffix>`` or ``<dir>/<name>.<suffix>`` if either exists."""
    for candidate in (directory / name / f"{name}.{suffix}", directory / f"{name}.{suffix}"):
        if candidate.is_file():
            return candidate
    return None


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _optional(table: AtomicTable, name: str) -> list[Any] | None:
    return table.columns.get(name)


def interactions(table: AtomicTable, name: str, cfg: RecboleAtomicConfig | None = None,
                 items: dict[str, ItemMeta] | None = None) -> RawDomain:
    """A ``RawDomain`` from an ``.inter`` table (rating 1.0 / timestamp 0 when absent)."""
    cfg = cfg or RecboleAtomicConfig()
    users = table.column(cfg.user_field)
    item_ids = table.column(cfg.item_field)
    n = len(users)
    for field, values in ((cfg.user_field, users), (cfg.item_field, item_ids)):
        empty = next((row for row, v in enumerate(values) if not v), None)
        if empty is not None:
            raise DatasetFormatError(f"{table.path}: data row {empty + 1}: empty {field!r}")
    rating = _optional(table, cfg.rating_field)
    stamp = _optional(table, cfg.timestamp_field)
    review = _optional(table, cfg.review_field)
    return RawDomain(
        name=name,
        user_ids=users,
        item_ids=item_ids,
        ratings=np.asarray(rating if rating is not None else np.ones(n), dtype=np.float32),
        timestamps=np.asarray(stamp if stamp is not None else np.zeros(n), dtype=np.int64),
        reviews=[_text(r) for r in review] if review is not None else None,
        items=items or {},
    )


@attrs.frozen
class RecboleAtomicConfig(DatasetConfig):
    """Two RecBole atomic datasets (``source``, ``target``) under ``directory``.

    Item content comes from the ``.item`` file when present: ``title_field``,
    ``description_field`` and ``category_field`` (missing fields give empty content).
    """

    kind: str = "recbole-atomic"
    directory: str = ""
    source: str = ""
    target: str = ""
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str = "rating"
    timestamp_field: str = "timestamp"
    review_field: str = "review"
    title_field: str = "title"
    description_field: str = "description"
    category_field: str = "categories"
    filters: FilterConfig = attrs.field(factory=FilterConfig)


def item_metadata(table: AtomicTable, cfg: RecboleAtomicConfig) -> dict[str, ItemMeta]:
    ids = table.column(cfg.item_field)
    n = len(ids)
    titles = _optional(table, cfg.title_field) or [""] * n
    descriptions = _optional(table, cfg.description_field) or [""] * n
    categories = _optional(table, cfg.category_field) or [()] * n
    return {
        str(i): ItemMeta(_text(t), _text(d), c if isinstance(c, tuple) else (str(c),))
        for i, t, d, c in zip(ids, titles, descriptions, categories, strict=True)
    }


class RecboleAtomicProvider:
    def __init__(self, config: RecboleAtomicConfig) -> None:
        self.config = config
        self.source = f"RecBole atomic files in {config.directory}"

    def _domain(self, name: str, field: str) -> RawDomain:
        cfg = self.config
        if not name:
            raise DataError(f"dataset.{field}: name of the {field} RecBole dataset is required")
        directory = Path(cfg.directory)
        inter = find_file(directory, name, "inter")
        if inter is None:
            raise DataError(f"dataset.{field}: no {name}.inter under {directory}")
        item_file = find_file(directory, name, "item")
        items = item_metadata(read_atomic(item_file), cfg) if item_file else {}
        return interactions(read_atomic(inter), name, cfg, items)

    def load(self, reporter: Reporter | None = None) -> CrossDomainDataset:
        if not self.config.directory:
            raise DataError("dataset.directory: directory of the RecBole atomic files is "
                            "required")
        source = self._domain(self.config.source, "source")
        target = self._domain(self.config.target, "target")
        return assemble(f"{self.config.source}-{self.config.target}", source, target)


def _build(config: RecboleAtomicConfig, ctx: BuildContext) -> RecboleAtomicProvider:
    return RecboleAtomicProvider(config)


component = Component(
    "recbole-atomic", "datasets", RecboleAtomicConfig, _build,
    "two RecBole atomic datasets (.inter/.item) sharing user ids",
)
