"""Validation at the edge where raw data files become tensors.

Every loader (RecBole atomic files, Amazon reviews, MovieLens) parses ids, ratings and
timestamps through the functions here, so a bad value is refused the same way everywhere: a
``DatasetFormatError`` whose message is one line naming the file and line (``where``), the
field and what was expected, e.g. ``ml.inter:17: rating 'abc' is not a number``.

Rules: ids are non-empty strings without control characters; ratings are finite numbers
inside the dataset's declared scale ``[rating_min, rating_max]`` (or clipped into it when
``clip_ratings`` is on, and counted); timestamps are integers (or integral-valued numbers,
truncated) in seconds with ``0 <= t <= 2**63 - 1``. ``check_usable`` checks an assembled
dataset: both domains have interactions over at least ``MIN_ITEMS`` items, indices are in
range and ratings finite.
"""

from __future__ import annotations

import math
import re
from typing import Any

import attrs
import torch

from cdr.data.records import CrossDomainDataset, Domain
from cdr.errors import DataError, DatasetFormatError

INT64_MAX = 2**63 - 1
MIN_ITEMS = 2  # a domain with fewer items cannot be ranked (NDCG@k would be trivially 1)
SCALE_HINT = ("set dataset.rating_min / dataset.rating_max to the file's rating scale, or "
              "dataset.clip_ratings=true to clip ratings into it")
_SHOW = 40


def show(value: Any) -> str:
    """``repr`` of a raw value for a one-line message, shortened."""
    text = repr(value)
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


def format_error(where: str, message: str, hint: str | None = None) -> DatasetFormatError:
    """``DatasetFormatError('<where>: <message>')`` on one line."""
    return DatasetFormatError(one_line(f"{where}: {message}"), hint=hint)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_id(value: Any, where: str, field: str) -> str:
    """A user or item id: a string that is not empty or only whitespace and holds no control
    character (NumPy's string arrays drop trailing NULs, which would merge ids)."""
    if not isinstance(value, str):
        raise format_error(where, f"{field} {show(value)} is not a string id")
    if not value.strip():
        raise format_error(where, f"empty {field} {show(value)}")
    if _CONTROL.search(value):
        raise format_error(where, f"{field} {show(value)} holds a control character")
    return value


def valid_ids(values: list[Any]) -> bool:
    """Whether every value passes ``check_id`` (one fast pass; no message)."""
    return (all(isinstance(v, str) for v in values) and all(map(str.strip, values))
            and not _CONTROL.search("".join(values)))


def _number(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise format_error(where, f"{field} {show(value)} is not a number")
    try:
        return float(value)
    except ValueError:
        raise format_error(where, f"{field} {show(value)} is not a number") from None
    except OverflowError:
        raise format_error(where, f"{field} {show(value)} is too large for a float") from None


def parse_rating(value: Any, where: str, field: str) -> float:
    """A rating: a finite number (a string token is parsed)."""
    number = _number(value, where, field)
    if not math.isfinite(number):
        raise format_error(where, f"{field} {show(value)} is not a finite number")
    return number


def parse_timestamp(value: Any, where: str, field: str, divisor: int = 1) -> int:
    """Seconds since 1970 from ``value`` / ``divisor`` (2023 Amazon: milliseconds, 1000)."""
    raw: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        raw = value
    elif isinstance(value, str):
        try:
            raw = int(value.strip())
        except ValueError:
            raw = None
    if raw is None:
        number = _number(value, where, field)
        if math.isnan(number):
            raise format_error(where, f"{field} {show(value)} is not a number (expected an "
                               "integer timestamp)")
        if math.isinf(number):
            raise format_error(where, f"{field} {show(value)} does not fit in int64")
        raw = int(number)
    seconds = raw // divisor
    if seconds < 0:
        raise format_error(where, f"{field} {show(value)} is negative (expected seconds "
                           "since 1970)")
    if seconds > INT64_MAX:
        raise format_error(where, f"{field} {show(value)} does not fit in int64")
    return seconds


def finite(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite number."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{attribute.name}: {value!r} must be a finite number")


def above_rating_min(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator for ``rating_max``: finite and greater than ``rating_min``."""
    finite(instance, attribute, value)
    if value <= instance.rating_min:
        raise ValueError(f"{attribute.name}: {value!r} must be > rating_min "
                         f"({instance.rating_min!r})")


@attrs.frozen
class RatingScale:
    """The ratings a dataset declares: ``low <= r <= high``; ``clip`` clips instead of
    refusing a rating outside."""

    low: float = 1.0
    high: float = 5.0
    clip: bool = False

    @classmethod
    def of(cls, config: Any) -> RatingScale:
        """The scale a dataset config declares (``rating_min``, ``rating_max``,
        ``clip_ratings``)."""
        return cls(float(config.rating_min), float(config.rating_max),
                   bool(config.clip_ratings))

    def fit(self, rating: float, where: str, field: str) -> tuple[float, bool]:
        """(the rating, or it clipped into the scale; whether it was clipped)."""
        if self.low <= rating <= self.high:
            return rating, False
        if not self.clip:
            raise format_error(
                where, f"{field} {rating:g} is outside the declared scale "
                f"[{self.low:g}, {self.high:g}]", hint=SCALE_HINT)
        return min(max(rating, self.low), self.high), True

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


def _fail(dataset: CrossDomainDataset, role: str, domain: Domain, problem: str) -> DataError:
    return DataError(one_line(f"dataset {dataset.name!r}: {role} domain {domain.name!r} "
                              f"{problem}"),
                     hint="loosen the dataset filters or check the input files")


def _check_structure(dataset: CrossDomainDataset, role: str, domain: Domain) -> None:
    inter = domain.interactions
    n = len(inter)
    if any(int(t.numel()) != n for t in (inter.item, inter.rating, inter.timestamp)):
        raise _fail(dataset, role, domain, "has interaction columns of different lengths")
    if domain.reviews is not None and len(domain.reviews) != n:
        raise _fail(dataset, role, domain, f"has {len(domain.reviews)} reviews for {n} "
                    "interactions")
    if len(domain.items) != domain.num_items:
        raise _fail(dataset, role, domain, f"has content for {len(domain.items)} of "
                    f"{domain.num_items} items")
    if domain.num_users != dataset.num_users:
        raise _fail(dataset, role, domain, f"counts {domain.num_users} users, the dataset "
                    f"{dataset.num_users}")


def _check_domain(dataset: CrossDomainDataset, role: str, domain: Domain) -> None:
    inter = domain.interactions
    if len(inter) == 0:
        raise _fail(dataset, role, domain, "has no interactions")
    for name, index, size in (("user", inter.user, dataset.num_users),
                              ("item", inter.item, domain.num_items)):
        if int(index.min()) < 0 or int(index.max()) >= size:
            raise _fail(dataset, role, domain, f"has {name} indices outside 0..{size - 1}")
    bad = int((~torch.isfinite(inter.rating)).sum())
    if bad:
        raise _fail(dataset, role, domain, f"has {bad} non-finite rating(s)")
    if int(inter.timestamp.min()) < 0:
        raise _fail(dataset, role, domain, "has negative timestamps")
    items = int(torch.unique(inter.item).numel())
    if items < MIN_ITEMS:
        raise _fail(dataset, role, domain, f"has interactions with only {items} item(s); "
                    f"ranking needs at least {MIN_ITEMS}")


def check_usable(dataset: CrossDomainDataset, *, structure: bool = False) -> None:
    """DataError naming the dataset and domain unless both domains can be trained and ranked
    on: interactions over at least ``MIN_ITEMS`` items, indices in range, finite ratings and
    non-negative timestamps. ``structure``: also check that columns, reviews and item
    content have matching lengths (what the store is about to write)."""
    for role, domain in (("source", dataset.source), ("target", dataset.target)):
        if structure:
            _check_structure(dataset, role, domain)
        _check_domain(dataset, role, domain)
