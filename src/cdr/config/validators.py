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
