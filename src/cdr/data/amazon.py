"""``amazon2018`` and ``amazon2023``: Amazon Reviews (McAuley lab) as two-category CDR sets.

Each category is a reviews file and a metadata file, JSON lines, plain or gzipped:

* 2018 (Ni et al., EMNLP 2019): ``<Category>.json[.gz]`` (or ``<Category>_5.json[.gz]``)
  with ``reviewerID``, ``asin``, ``overall``, ``reviewText``, ``unixReviewTime`` and
  ``meta_<Category>.json[.gz]`` with ``asin``, ``title``, ``description``, ``category``,
  ``imageURLHighRes``.
* 2023 (Hou et al., 2024): ``<Category>.jsonl[.gz]`` with ``user_id``, ``parent_asin``,
  ``rating``, ``text``, ``timestamp`` (milliseconds) and ``meta_<Category>.jsonl[.gz]`` with
  ``parent_asin``, ``title``, ``description``, ``categories``, ``images``.

The two categories chosen in the config are the two domains. Images are never fetched:
``image_dir`` may hold one file per item named by its id (``<id>.jpg|.jpeg|.png|.webp``); an
item without a local file has no image (recorded as missing, not an error).
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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
    one_line,
    parse_rating,
    parse_timestamp,
    valid_ids,
)
from cdr.errors import DataError, DatasetFormatError
from cdr.progress import Reporter, null_reporter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@attrs.frozen
class FormatSpec:
    """Field names of one Amazon release."""

    version: str
    user: str
    item: str
    rating: str
    text: str
    time: str
    time_scale: int  # divide timestamps by this to get seconds
    meta_item: str
    categories: str
    suffixes: tuple[str, ...]


FORMATS = {
    "2018": FormatSpec("2018", "reviewerID", "asin", "overall", "reviewText", "unixReviewTime",
                       1, "asin", "category", (".json", ".json.gz", "_5.json", "_5.json.gz",
                                               ".jsonl", ".jsonl.gz")),
    "2023": FormatSpec("2023", "user_id", "parent_asin", "rating", "text", "timestamp", 1000,
                       "parent_asin", "categories", (".jsonl", ".jsonl.gz", ".json",
                                                     ".json.gz")),
}


def open_binary(path: Path) -> BinaryIO:
    """Open plain or gzipped bytes (detected by the gzip magic bytes, not the name)."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
        if magic == b"\x1f\x8b":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return path.open("rb")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise DatasetFormatError(f"{path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise DatasetFormatError(one_line(f"{path}: unreadable ({exc.strerror or exc})")) \
            from exc


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) per line; DatasetFormatError on corrupt or truncated gzip data."""
    number = 0
    with open_binary(path) as fh:
        try:
            for number, raw in enumerate(fh, start=1):
                yield number, raw
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetFormatError(one_line(
                f"{path}:{number + 1}: corrupt or truncated gzip data "
                f"({exc or type(exc).__name__})")) from None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string in ``value`` holds a surrogate (json.loads leaves unpaired ``\\ud800``
    escapes in, and such a string cannot be written as UTF-8). Iterative: any depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def json_lines(path: Path, skip_malformed: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line; DatasetFormatError on a malformed line
    (not UTF-8, not JSON, not an object) unless ``skip_malformed``."""
    for number, raw in _lines(path):
        try:
            # utf-8, not utf-8-sig: that codec is Python code, a third of the per-line cost
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if skip_malformed:
                continue
            raise DatasetFormatError(
                f"{path}:{number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1})") from None
        if line.startswith("\ufeff"):  # a byte-order mark
            line = line[1:]
        if not line or line.isspace():  # = not line.strip(), without a copy of the line
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_malformed:
                continue
            raise DatasetFormatError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        except (ValueError, RecursionError) as exc:  # int digit limit, deep nesting
            if skip_malformed:
                continue
            raise DatasetFormatError(
                one_line(f"{path}:{number}: malformed JSON ({exc})")[:300]) from None
        if not isinstance(obj, dict):
            if skip_malformed:
                continue
            raise DatasetFormatError(f"{path}:{number}: expected a JSON object")
        if _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(obj):
            if skip_malformed:
                continue
            raise DatasetFormatError(f"{path}:{number}: a string holds an unpaired UTF-16 "
                                     "surrogate escape (not valid text)")
        yield number, obj


def _field(value: Any, name: str, path: Path, line: int, kind: type | tuple[type, ...],
           required: bool = True) -> Any:
    """``value`` (a field of the object on ``line``; None: absent or null), type-checked."""
    if value is None:
        if required:
            raise DatasetFormatError(f"{path}:{line}: missing field {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        kinds = (kind,) if isinstance(kind, type) else kind
        expected = " or ".join(k.__name__ for k in kinds)
        raise DatasetFormatError(
            f"{path}:{line}: field {name!r} has type {type(value).__name__}, expected {expected}"
        )
    return value


def _as_text(value: Any) -> str:
    """Metadata text: a string, or a list of strings joined (2018/2023 descriptions)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value if v).strip()
    return str(value).strip()


def _categories(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        flat: list[str] = []
        for v in value:  # some 2018 dumps nest category paths
            flat.extend(str(x) for x in v) if isinstance(v, list) else flat.append(str(v))
        return tuple(c for c in flat if c)
    return (str(value),) if value else ()


def read_reviews(path: Path, spec: FormatSpec, name: str, skip_malformed: bool = False,
                 reporter: Reporter = null_reporter,
                 scale: RatingScale | None = None) -> RawDomain:
    """Parse a reviews file into a ``RawDomain`` (no item content yet).

    Ids, ratings (finite, in ``scale`` unless it clips) and timestamps (integers in int64
    seconds) are validated; ``skip_malformed`` skips a bad line instead of refusing it.
    The fields are collected as read and validated a column at a time when every value is
    of the usual kind (one vectorised check per column); otherwise row by row, which names
    the first bad line. A file with several problems reports the first in file order.
    """
    scale = scale or RatingScale()
    raw = _ReviewColumns()
    failure: DatasetFormatError | None = None
    try:
        for line, obj in json_lines(path, skip_malformed):
            raw.add(line, obj, spec)
    except DatasetFormatError as exc:  # reported after the rows before it are checked
        failure = exc
    columns = raw.fast(scale, spec.time_scale)
    if columns is None:
        columns = raw.row_by_row(path, spec, scale, skip_malformed)
    if failure is not None:
        raise failure
    users, items, ratings, stamps, texts, clipped = columns
    if not users:
        usable = "usable " if skip_malformed else ""
        raise DatasetFormatError(f"{path}: no {usable}reviews, so domain {name!r} has no "
                                 "interactions")
    reporter(f"read {name} reviews", advance=len(users))
    return RawDomain(name, users, items, ratings, stamps, texts, {}, clipped=clipped)


#: validated reviews: users, items, ratings [E] float32, seconds [E] int64, texts, clipped
Columns = tuple[list[str], list[str], np.ndarray, np.ndarray, list[str], int]


class _ReviewColumns:
    """The review fields of a file as read (unvalidated), one list per field."""

    def __init__(self) -> None:
        self.lines: list[int] = []
        self.users: list[Any] = []
        self.items: list[Any] = []
        self.ratings: list[Any] = []
        self.stamps: list[Any] = []
        self.texts: list[Any] = []

    def add(self, line: int, obj: dict[str, Any], spec: FormatSpec) -> None:
        get = obj.get
        self.lines.append(line)
        self.users.append(get(spec.user))
        self.items.append(get(spec.item))
        self.ratings.append(get(spec.rating))
        self.stamps.append(get(spec.time))
        self.texts.append(get(spec.text))

    def fast(self, scale: RatingScale, divisor: int) -> Columns | None:
        """The columns when every value is of the usual kind and in range (what the row
        path would accept unchanged), else None."""
        if not (valid_ids(self.users) and valid_ids(self.items)):
            return None
        if not set(map(type, self.ratings)) <= {int, float}:  # bools, None, strings: rows
            return None
        stamp_types = set(map(type, self.stamps))
        text_types = set(map(type, self.texts))
        if not (stamp_types <= {int, type(None)} and text_types <= {str, type(None)}):
            return None
        try:
            ratings = np.asarray(self.ratings, dtype=np.float64)  # [E]
            stamps = np.asarray(self.stamps if type(None) not in stamp_types
                                else [0 if s is None else s for s in self.stamps],
                                dtype=np.int64)  # [E]; OverflowError beyond int64
        except OverflowError:
            return None
        # NaN and infinities fail the comparisons; a rating outside the scale goes to the
        # row path (which refuses or clips it, and counts the clipped)
        if not bool(((ratings >= scale.low) & (ratings <= scale.high)).all()):
            return None
        if not bool((stamps >= 0).all()):
            return None
        texts = self.texts if type(None) not in text_types else [t or "" for t in self.texts]
        return (self.users, self.items, ratings.astype(np.float32), stamps // divisor, texts, 0)

    def row_by_row(self, path: Path, spec: FormatSpec, scale: RatingScale,
                   skip_malformed: bool) -> Columns:
        users: list[str] = []
        items: list[str] = []
        ratings: list[float] = []
        stamps: list[int] = []
        texts: list[str] = []
        clipped = 0
        for line, user, item, rating, stamp, text in zip(
                self.lines, self.users, self.items, self.ratings, self.stamps, self.texts,
                strict=True):
            where = f"{path}:{line}"
            try:
                user = check_id(_field(user, spec.user, path, line, str), where, spec.user)
                item = check_id(_field(item, spec.item, path, line, str), where, spec.item)
                rating = parse_rating(_field(rating, spec.rating, path, line, (int, float)),
                                      where, spec.rating)
                rating, was_clipped = scale.fit(rating, where, spec.rating)
                stamp = _field(stamp, spec.time, path, line, (int, float), required=False)
                seconds = (0 if stamp is None
                           else parse_timestamp(stamp, where, spec.time, spec.time_scale))
                text = _field(text, spec.text, path, line, str, required=False)
            except DatasetFormatError:
                if skip_malformed:
                    continue
                raise
            users.append(user)
            items.append(item)
            ratings.append(rating)
            stamps.append(seconds)
            texts.append(text or "")
            clipped += was_clipped
        return (users, items, np.asarray(ratings, dtype=np.float32),
                np.asarray(stamps, dtype=np.int64), texts, clipped)


def read_metadata(path: Path, spec: FormatSpec, wanted: set[str],
                  image_of: Callable[[str], str | None],
                  skip_malformed: bool = False) -> dict[str, ItemMeta]:
    """Content of the items in ``wanted`` (others are skipped without validation)."""
    out: dict[str, ItemMeta] = {}
    for line, obj in json_lines(path, skip_malformed):
        item = obj.get(spec.meta_item)
        if not isinstance(item, str):
            if skip_malformed:
                continue
            raise DatasetFormatError(f"{path}:{line}: missing field {spec.meta_item!r}")
        if item not in wanted:
            continue
        out[item] = ItemMeta(
            title=_as_text(obj.get("title")),
            description=_as_text(obj.get("description")),
            categories=_categories(obj.get(spec.categories)),
            image=image_of(item),
        )
    return out


def find_category_file(directory: Path, stem: str, spec: FormatSpec) -> Path:
    tried = [directory / f"{stem}{suffix}" for suffix in spec.suffixes]
    for path in tried:
        if path.is_file():
            return path
    names = ", ".join(p.name for p in tried)
    raise DataError(f"{directory}: no {spec.version} file for {stem!r} (tried {names})")


def _image_finder(image_dir: Path | None) -> Callable[[str], str | None]:
    if image_dir is None:
        return lambda item: None
    if not image_dir.is_dir():
        raise DataError(f"dataset.image_dir: {image_dir} is not a directory")
    present: dict[str, str] = {}
    for file in sorted(image_dir.iterdir()):
        if file.suffix.lower() in IMAGE_SUFFIXES and file.stem not in present:
            present[file.stem] = file.name
    return present.get


@attrs.frozen
class AmazonConfig(DatasetConfig):
    """Two Amazon categories under ``directory`` (file names as released).

    Ratings must lie in ``[rating_min, rating_max]`` (Amazon: 1..5 stars); ``clip_ratings``
    clips them into it instead (the count is reported in the built dataset).
    """

    kind: str = "amazon2018"
    directory: str = ""
    source: str = "Movies_and_TV"
    target: str = "CDs_and_Vinyl"
    image_dir: str | None = None
    skip_malformed: bool = False
    rating_min: float = attrs.field(default=1.0, validator=finite)
    rating_max: float = attrs.field(default=5.0, validator=above_rating_min)
    clip_ratings: bool = False
    filters: FilterConfig = attrs.field(factory=FilterConfig)


@attrs.frozen
class Amazon2023Config(AmazonConfig):
    kind: str = "amazon2023"


class AmazonProvider:
    def __init__(self, config: AmazonConfig, spec: FormatSpec) -> None:
        self.config = config
        self.spec = spec
        self.source = f"Amazon Reviews {spec.version} in {config.directory}"

    def inputs(self) -> list[Path]:
        """The raw files ``load`` reads (their fingerprints are part of the cache key)."""
        cfg = self.config
        if not cfg.directory:
            return []
        directory = Path(cfg.directory)
        return [find_category_file(directory, stem, self.spec)
                for category in (cfg.source, cfg.target)
                for stem in (category, f"meta_{category}")]

    def _domain(self, category: str, image_of: Callable[[str], str | None], root: Path | None,
                reporter: Reporter) -> RawDomain:
        directory = Path(self.config.directory)
        reviews = read_reviews(find_category_file(directory, category, self.spec), self.spec,
                               category, self.config.skip_malformed, reporter,
                               RatingScale.of(self.config))
        meta_file = find_category_file(directory, f"meta_{category}", self.spec)
        items = read_metadata(meta_file, self.spec, set(reviews.item_ids), image_of,
                              self.config.skip_malformed)
        return attrs.evolve(reviews, items=items, root=root)

    def load(self, reporter: Reporter | None = None) -> CrossDomainDataset:
        cfg = self.config
        if not cfg.directory:
            raise DataError("dataset.directory: directory of the Amazon files is required")
        if cfg.source == cfg.target:
            raise DataError(f"dataset.target: same category as dataset.source ({cfg.source!r})")
        image_dir = Path(cfg.image_dir).resolve() if cfg.image_dir else None
        image_of = _image_finder(image_dir)
        report = reporter or null_reporter
        source = self._domain(cfg.source, image_of, image_dir, report)
        target = self._domain(cfg.target, image_of, image_dir, report)
        return assemble(f"amazon{self.spec.version}-{cfg.source}-{cfg.target}", source, target)


def _build_2018(config: AmazonConfig, ctx: BuildContext) -> AmazonProvider:
    return AmazonProvider(config, FORMATS["2018"])


def _build_2023(config: AmazonConfig, ctx: BuildContext) -> AmazonProvider:
    return AmazonProvider(config, FORMATS["2023"])


component = Component(
    "amazon2018", "datasets", AmazonConfig, _build_2018,
    "Amazon Reviews 2018: two categories as domains (reviews + metadata, local images)",
)

component_2023 = Component(
    "amazon2023", "datasets", Amazon2023Config, _build_2023,
    "Amazon Reviews 2023: two categories as domains (reviews + metadata, local images)",
)
