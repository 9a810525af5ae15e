"""attrs validators whose messages name their field (cattrs loses the path of validator errors)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import attrs


def _name(attribute: attrs.Attribute[Any]) -> str:
    return attribute.name


def in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """Check ``low <= value <= high`` (strict where ``*_open``); None bounds are unbounded."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        bad = (low is not None and (value <= low if low_open else value < low)) or (
            high is not None and (value >= high if high_open else value > high)
        )
        if bad:
            lo = "-inf" if low is None else f"{low}"
            hi = "inf" if high is None else f"{high}"
            interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
            raise ValueError(f"{_name(attribute)}: {value!r} is not in {interval}")

    return check


def one_of(choices: Collection[Any]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """Check the value is one of ``choices``."""

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{_name(attribute)}: {value!r} is not one of {options}")

    return check


def positive(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Check value > 0."""
    if value is not None and value <= 0:
        raise ValueError(f"{_name(attribute)}: {value!r} must be > 0")


def non_negative(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Check value >= 0."""
    if value is not None and value < 0:
        raise ValueError(f"{_name(attribute)}: {value!r} must be >= 0")


def plain_name(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A name used as a directory name: one plain path component (no '/', no '..')."""
    from cdr.paths import is_safe_name

    if not isinstance(value, str) or not is_safe_name(value):
        raise ValueError(
            f"{_name(attribute)}: {value!r} is not a plain name (letters, digits and ._+=- "
            "only, no '/' or '..', at most 128 characters)"
        )


def all_positive(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Every element > 0 (cut-offs, layer widths); at least one element."""
    if not value or any(v <= 0 for v in value):
        raise ValueError(f"{_name(attribute)}: {list(value)!r} must be non-empty, every value > 0")


def fractions(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Non-negative fractions summing to 1 (train/validation/test ratios)."""
    if any(v < 0 for v in value) or abs(sum(value) - 1.0) > 1e-6:
        raise ValueError(f"{_name(attribute)}: {list(value)!r} must be >= 0 and sum to 1")
