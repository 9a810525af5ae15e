"""RecBole atomic files (``.inter``, ``.item``, ``.user``) and the ``recbole-atomic`` provider.

Format: tab-separated text, first line a header of ``name:type`` fields with type one of
``token``, ``token_seq`` (space-separated tokens), ``float``, ``float_seq``. A cross-domain
dataset is two RecBole datasets (one per domain) sharing user ids, laid out as RecBole does:
``<directory>/<name>/<name>.inter`` (or ``<directory>/<name>.inter``).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from cdr.components import BuildContext, Component, DatasetConfig
from cdr.data.assemble import ItemMeta, RawDomain, assemble
from cdr.data.filters import FilterConfig
from cdr.data.records import CrossDomainDataset
from cdr.data.validate import (
    RatingScale,
    above_rating_min,
    check_id,
    finite,
    format_error,
    one_line,
    parse_rating,
    parse_timestamp,
    show,
    valid_ids,
)
from cdr.errors import DataError, DatasetFormatError
from cdr.progress import Reporter

TYPES = ("token", "token_seq", "float", "float_seq")


@attrs.frozen(eq=False)
class AtomicTable:
    """Columns of one atomic file by field name (token -> str, token_seq -> tuple[str],
    float -> float, float_seq -> tuple[float]); ``lines[r]`` is the 1-based line number of
    data row ``r`` in the file."""

    path: Path
    types: dict[str, str]
    columns: dict[str, list[Any]]
    lines: list[int] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def column(self, name: str) -> list[Any]:
        if name not in self.columns:
            known = ", ".join(self.columns)
            raise DatasetFormatError(f"{self.path}: no field {name!r} (fields: {known})")
        return self.columns[name]

    def where(self, row: int) -> str:
        """``<path>:<line>`` of data row ``row``."""
        line = self.lines[row] if row < len(self.lines) else row + 2
        return f"{self.path}:{line}"


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
        raise format_error(f"{path}:{line}", f"field {name!r}: {show(value)} is not a "
                           f"{kind}") from None


def read_bytes(path: Path) -> bytes:
    """The bytes of a raw data file; DataError when missing, DatasetFormatError when it is
    not a readable regular file."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DatasetFormatError(f"{path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise DatasetFormatError(one_line(f"{path}: unreadable ({exc.strerror or exc})")) \
            from exc


def decode_utf8(data: bytes, path: Path) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped); DatasetFormatError naming
    the line of the first invalid byte."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetFormatError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def read_atomic(path: Path) -> AtomicTable:
    """Parse one atomic file; DatasetFormatError naming file, line and field on bad input."""
    text = decode_utf8(read_bytes(path), path)
    # lines end at "\n" only: str.splitlines would also split at \x1c, \x85, U+2028, ...
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not lines[0].strip():
        raise DatasetFormatError(f"{path}:1: empty file (expected a name:type header)")
    names: list[str] = []
    types: dict[str, str] = {}
    for field in lines[0].split("\t"):
        name, sep, kind = field.strip().rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise format_error(
                f"{path}:1", f"header field {show(field)} is not name:type "
                f"(type one of {', '.join(TYPES)})"
            )
        if name in types:
            raise format_error(f"{path}:1", f"header field {show(name)} appears twice")
        names.append(name)
        types[name] = kind
    columns: dict[str, list[Any]] = {name: [] for name in names}
    numbers: list[int] = []
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
        numbers.append(number)
    return AtomicTable(path, types, columns, numbers)


def id_column(table: AtomicTable, field: str) -> list[str]:
    """Field ``field`` as ids (non-empty strings without control characters)."""
    values = table.column(field)
    if table.types[field] == "token" and valid_ids(values):
        return values  # fast path; else the row-by-row check names the first bad row
    return [check_id(v, table.where(r), field) for r, v in enumerate(values)]


def rating_column(table: AtomicTable, field: str, scale: RatingScale) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """([E] float32 ratings, finite and in ``scale``; [E] bool: clipped into the scale)."""
    values = table.column(field)
    if table.types[field] == "float":  # fast path; else row by row (names the bad row)
        array = np.asarray(values, dtype=np.float64)
        if bool(((array >= scale.low) & (array <= scale.high)).all()):  # NaN compares False
            return array.astype(np.float32), np.zeros(len(values), dtype=bool)
    ratings = np.empty(len(values), dtype=np.float32)
    clipped = np.zeros(len(values), dtype=bool)
    for r, v in enumerate(values):
        where = table.where(r)
        ratings[r], clipped[r] = scale.fit(parse_rating(v, where, field), where, field)
    return ratings, clipped


def timestamp_column(table: AtomicTable, field: str) -> np.ndarray:
    """[E] int64 timestamps in seconds (validated: numbers in 0..2**63-1)."""
    values = table.column(field)
    if table.types[field] == "float":  # fast path; else row by row (names the bad row)
        array = np.asarray(values, dtype=np.float64)
        if bool(((array >= 0) & (array < 2.0**63)).all()):  # NaN compares False
            return array.astype(np.int64)  # truncates toward zero, as int() does
    out = np.empty(len(values), dtype=np.int64)
    for r, v in enumerate(values):
        out[r] = parse_timestamp(v, table.where(r), field)
    return out


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
    """A ``RawDomain`` from an ``.inter`` table (rating 1.0 / timestamp 0 when absent).

    Every id, rating and timestamp is validated (``cdr.data.validate``); ratings must lie in
    the config's declared scale unless ``clip_ratings``.
    """
    cfg = cfg or RecboleAtomicConfig()
    users = id_column(table, cfg.user_field)
    item_ids = id_column(table, cfg.item_field)
    n = len(users)
    if n == 0:
        raise DatasetFormatError(f"{table.path}: no data rows, so domain {name!r} has no "
                                 "interactions")
    ratings, clipped = np.ones(n, dtype=np.float32), np.zeros(n, dtype=bool)
    if cfg.rating_field in table.columns:
        ratings, clipped = rating_column(table, cfg.rating_field, RatingScale.of(cfg))
    stamps = np.zeros(n, dtype=np.int64)
    if cfg.timestamp_field in table.columns:
        stamps = timestamp_column(table, cfg.timestamp_field)
    review = _optional(table, cfg.review_field)
    return RawDomain(
        name=name,
        user_ids=users,
        item_ids=item_ids,
        ratings=ratings,
        timestamps=stamps,
        reviews=[_text(r) for r in review] if review is not None else None,
        items=items or {},
        clipped=int(clipped.sum()),
    )


@attrs.frozen
class RecboleAtomicConfig(DatasetConfig):
    """Two RecBole atomic datasets (``source``, ``target``) under ``directory``.

    Item content comes from the ``.item`` file when present: ``title_field``,
    ``description_field`` and ``category_field`` (missing fields give empty content).
    Ratings must lie in ``[rating_min, rating_max]``; ``clip_ratings`` clips them into it
    instead (the count is reported in the built dataset's filters and counts).
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
    rating_min: float = attrs.field(default=1.0, validator=finite)
    rating_max: float = attrs.field(default=5.0, validator=above_rating_min)
    clip_ratings: bool = False
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

    def inputs(self) -> list[Path]:
        """The raw files ``load`` reads (their fingerprints are part of the cache key)."""
        if not self.config.directory:
            return []
        directory = Path(self.config.directory)
        found = (find_file(directory, name, suffix)
                 for name in (self.config.source, self.config.target) if name
                 for suffix in ("inter", "item"))
        return [path for path in found if path is not None]

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
