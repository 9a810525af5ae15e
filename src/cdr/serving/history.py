"""A cold-start user's auxiliary-domain history: the accepted shapes and their checks.

A history file is UTF-8 text (at most ``MAX_HISTORY_BYTES``). A ``.csv`` file holds one
entry per non-blank line, ``item`` or ``item,rating``. Any other file is JSON, one of:

- a list whose entries are each
  - an item id: a string, or an integer (``242`` means the id ``"242"``), rating 1;
  - an ``[item, rating]`` pair (exactly two elements);
  - an ``{"item": id, "rating": r}`` object (``rating`` optional, default 1; no other keys);
- an object ``{"item id": rating, ...}`` (a lone ``{"item": ..}`` is refused: wrap it in a
  list).

A rating is a JSON number (not a boolean, string or null), finite, with
``0 < rating <= MAX_RATING``: ratings weight the history items in the fold-in's mean, so
they must be positive (their sum then is too). Each item appears once (a repeat is an
error naming both entries, not merged). An empty history is an error. Item ids the bundle
does not know are an error too (``Recommender.recommend_cold``), naming the entry.

Every problem is a one-line ``InputError`` naming the file (or request) and the entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from cdr.errors import InputError
from cdr.serving.schema import one_line

MAX_RATING = 1e6
MAX_HISTORY_BYTES = 64 << 20
SHAPES = (
    'a JSON list of item ids, [item, rating] pairs or {"item": id, "rating": r} objects, '
    'a JSON object {"item id": rating}, or a .csv file of lines item[,rating]'
)


@attrs.frozen
class History:
    """Validated entries: ``items[n]`` rated ``ratings[n]``, described as ``labels[n]``."""

    source: str
    items: tuple[str, ...]
    ratings: tuple[float, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def of(cls, source: str, entries: Iterable[tuple[str, Any, str]]) -> History:
        """From (item, rating, label) triples: checks ids, ratings, repeats, emptiness."""
        items: list[str] = []
        ratings: list[float] = []
        labels: list[str] = []
        first: dict[str, str] = {}
        for item, rating, label in entries:
            if not isinstance(item, str) or not item.strip():
                raise InputError(f"{source}: {label}: item id must be a non-empty string")
            value = check_rating(rating, f"{source}: {label}")
            if item in first:
                raise InputError(
                    f"{source}: {label}: item {show(item)} repeats {first[item]}",
                    hint="give each item once (ratings are not merged)",
                )
            first[item] = label
            items.append(item)
            ratings.append(value)
            labels.append(label)
        if not items:
            raise InputError(f"{source}: empty history", hint=f"a history is {SHAPES}")
        return cls(source, tuple(items), tuple(ratings), tuple(labels))

    @classmethod
    def from_pairs(cls, source: str, pairs: Iterable[tuple[str, Any]]) -> History:
        """From ``[(item id, rating)]`` (the library API); entries are numbered from 1."""
        triples = []
        for n, pair in enumerate(pairs, start=1):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise InputError(f"{source}: entry {n}: expected an (item id, rating) pair")
            triples.append((pair[0], pair[1], f"entry {n}"))
        return cls.of(source, triples)


def check_rating(value: Any, where: str) -> float:
    """A rating as a float; InputError unless a finite number in (0, MAX_RATING]."""
    if isinstance(value, bool):
        raise InputError(f"{where}: rating {json.dumps(value)} is a boolean, not a number")
    if not isinstance(value, int | float):
        raise InputError(f"{where}: rating must be a number, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{where}: rating {value} is not a finite number")
    if not 0 < value <= MAX_RATING:
        shown = f"{value:g}" if isinstance(value, float) or abs(value) < 10**15 else "huge"
        raise InputError(
            f"{where}: rating {shown} outside (0, {MAX_RATING:g}]",
            hint="ratings weight the history's items in a mean: they must be positive",
        )
    return float(value)


def read_history(path: Path) -> History:
    """Read and check a history file (module docstring); InputError naming file and entry."""
    if not path.exists():
        raise InputError(f"{path}: no such history file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a history file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_HISTORY_BYTES:
            raise InputError(f"{path}: {size} bytes, over the {MAX_HISTORY_BYTES}-byte limit")
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({one_line(exc)})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    if path.suffix.lower() == ".csv":
        return _csv_history(str(path), text)
    return parse_history(str(path), _load_json(str(path), text))


def _load_json(source: str, text: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise InputError(f"{source}: key {show(key)} appears more than once in an object")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except RecursionError as exc:
        raise InputError(f"{source}: not a history (JSON nested too deeply)") from exc
    except ValueError as exc:  # JSONDecodeError, and integers with too many digits
        raise InputError(
            f"{source}: not valid JSON ({one_line(exc)})",
            hint=f"a history is {SHAPES}",
        ) from exc


def _csv_history(source: str, text: str) -> History:
    triples = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        label = f"line {n}"
        if len(fields) > 2:
            raise InputError(f"{source}: {label}: expected item[,rating], got {len(fields)} fields")
        rating: Any = 1.0
        if len(fields) == 2:
            try:
                rating = float(fields[1])
            except ValueError as exc:
                raise InputError(
                    f"{source}: {label}: rating {show(fields[1])} is not a number"
                ) from exc
        triples.append((fields[0], rating, label))
    return History.of(source, triples)


def parse_history(source: str, data: Any) -> History:
    """A parsed JSON value in one of the accepted shapes -> History (InputError otherwise)."""
    if isinstance(data, dict):
        if "item" in data or "rating" in data:
            raise InputError(
                f'{source}: an object with an "item" key is one entry, not a history',
                hint='wrap it in a list: [{"item": ..., "rating": ...}]',
            )
        entries = enumerate(data.items(), start=1)
        return History.of(
            source, ((item, rating, f"entry {n} ({show(item)})") for n, (item, rating) in entries)
        )
    if not isinstance(data, list):
        raise InputError(f"{source}: a history is {SHAPES}; got {_kind(data)}")
    return History.of(source, (_entry(source, n, e) for n, e in enumerate(data, start=1)))


def _entry(source: str, n: int, entry: Any) -> tuple[str, Any, str]:
    label = f"entry {n}"
    if isinstance(entry, dict):
        extra = sorted(set(entry) - {"item", "rating"})
        if extra or "item" not in entry:
            what = f"unknown key {show(extra[0])}" if extra else 'no "item" key'
            raise InputError(f'{source}: {label}: {what}; expected {{"item": id, "rating": r}}')
        return _item_id(source, label, entry["item"]), entry.get("rating", 1.0), label
    if isinstance(entry, list):
        if len(entry) != 2:
            raise InputError(
                f"{source}: {label}: a list entry is an [item, rating] pair, "
                f"got {len(entry)} element(s)"
            )
        return _item_id(source, label, entry[0]), entry[1], label
    return _item_id(source, label, entry), 1.0, label


def _item_id(source: str, label: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InputError(
        f"{source}: {label}: {_kind(value)} is not an item id (an id is a string or an integer)",
        hint=f"a history is {SHAPES}",
    )


def show(text: str, limit: int = 40) -> str:
    """``text`` quoted on one line, shortened: for ids from untrusted input in messages."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"the number {value!r}"[:60]
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
