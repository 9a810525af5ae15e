"""TOML <-> ExperimentConfig through one cattrs converter that knows the registry.

A component section is structured into the config class its ``kind`` names (looked up in
the registry at structuring time, so plugin configs are included). Unknown keys are errors
(``forbid_extra_keys``); every problem is reported as one line with its dotted path.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import cattrs
import tomli_w
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from cdr.components import CONFIG_BASES, ComponentConfig
from cdr.config.experiment import ExperimentConfig
from cdr.errors import CdrError, ConfigError
from cdr.registry import Registry

Data = dict[str, Any]


def _component_hook(
    converter: cattrs.Converter, registry: Registry, group: str
) -> Callable[[Any, Any], ComponentConfig]:
    def structure(value: Any, _: Any) -> ComponentConfig:
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a table with a 'kind' key, got {type(value).__name__}")
        kind = value.get("kind")
        if not isinstance(kind, str):
            known = ", ".join(registry.names(group))
            raise ValueError(f"missing 'kind' (one of: {known})")
        component = registry.get(group, kind)
        cfg: ComponentConfig = converter.structure(dict(value), component.config_cls)
        return cfg

    return structure


def _is(base: type) -> Callable[[Any], bool]:
    return lambda t: t is base


def _as_runtime_type(converter: cattrs.Converter) -> Callable[[Any], Any]:
    return lambda value: converter.unstructure(value, unstructure_as=type(value))


def _strict_int(value: Any, _: Any) -> int:
    """Integers only: ``1.5``, ``true`` and ``"3"`` are errors, not 1, 1 and 3."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    """Finite numbers only (an integer is a float too); NaN and infinity are errors."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def make_converter(registry: Registry) -> cattrs.Converter:
    """The converter that owns config <-> plain data for ``registry``'s components.

    Scalars are strict: integers reject fractions and booleans, floats reject NaN and
    infinity, booleans accept only ``true``/``false``.
    """
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    for group, base in CONFIG_BASES.items():
        # Exact-type predicates: a plain hook would also match the concrete subclasses
        # (singledispatch) and recurse.
        converter.register_structure_hook_func(
            _is(base), _component_hook(converter, registry, group)
        )
        converter.register_unstructure_hook_func(_is(base), _as_runtime_type(converter))
    return converter


def format_errors(exc: BaseException, path: str = "$") -> list[str]:
    """One line per leaf problem, with its dotted path (``generator.steps: ...``)."""
    where = path.removeprefix("$").removeprefix(".") or "config"
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines: list[str] = []
        with_notes, without_notes = exc.group_exceptions()
        for inner, note in with_notes:
            step = (
                f"{path}.{note.name}"
                if hasattr(note, "name")
                else f"{path}[{getattr(note, 'index', '?')}]"
            )
            lines += format_errors(inner, step)
        for inner in without_notes:
            lines += format_errors(inner, path)
        return lines
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return [f"{where}: unknown key(s) {keys}"]
    if isinstance(exc, CdrError):
        return [f"{where}: {exc}"]
    if isinstance(exc, KeyError):
        return [f"{where}.{exc.args[0]}: required key missing"]
    if isinstance(exc, ValueError | TypeError):
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        field = re.match(r"^(\w+): ", message)
        if field and not where.endswith(field.group(1)):
            # attrs validators name their own field; put it on the dotted path.
            return [f"{where}.{message}" if where != "config" else message]
        if "invalid literal" in message or "could not convert" in message:
            message = f"wrong type ({message})"
        return [f"{where}: {message}"]
    return [f"{where}: {type(exc).__name__}: {exc}"]


def structure_experiment(data: Mapping[str, Any], registry: Registry) -> ExperimentConfig:
    """Plain data -> ExperimentConfig; ConfigError with one line per problem."""
    converter = make_converter(registry)
    try:
        return converter.structure(dict(data), ExperimentConfig)
    except (ClassValidationError, ForbiddenExtraKeysError, ValueError, TypeError, CdrError) as exc:
        lines = format_errors(exc)
        raise ConfigError("; ".join(lines)) from exc


def config_to_dict(cfg: Any, registry: Registry) -> Data:
    """Config -> plain data (None values dropped: TOML has no null, defaults restore them)."""
    data = make_converter(registry).unstructure(cfg)
    return _drop_none(data)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def config_to_toml(cfg: Any, registry: Registry) -> str:
    return tomli_w.dumps(config_to_dict(cfg, registry))


def default_data(name: str = "default") -> Data:
    """A packaged config (``cdr/configs/<name>.toml``) as plain data."""
    text = resources.files("cdr").joinpath("configs", f"{name}.toml").read_text()
    return tomllib.loads(text)


def read_toml(path: Path) -> Data:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory, not a config file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc


def merge(base: Data, update: Mapping[str, Any]) -> Data:
    """Deep-merge ``update`` into a copy of ``base``. A component table whose ``kind``
    changes is replaced whole (the old kind's keys would not fit the new one)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, dict):
            if "kind" in value and value["kind"] != old.get("kind"):
                out[key] = copy.deepcopy(dict(value))
            else:
                out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """A CLI override value as TOML (``10``, ``0.5``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Data, overrides: Iterable[str]) -> Data:
    """Apply ``dotted.key=value`` overrides; setting a ``kind`` resets that table."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        parts = key.strip().split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {item!r}: {where} is a value, not a table")
            node = child
        value = parse_value(raw.strip())
        if parts[-1] == "kind" and node.get("kind") != value:
            node.clear()
        node[parts[-1]] = value
    return out


def load_experiment(
    path: Path | None,
    registry: Registry,
    overrides: Iterable[str] = (),
    components: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Packaged default <- config file <- component choices <- ``--set`` overrides.

    When the components chosen on the command line are a graph backbone without a generator
    and neither the file nor ``--set`` names a split, the split defaults to MICRec's
    inductive protocol (20% unseen users and items) instead of the default cold-start one.
    """
    data = default_data()
    file_data = read_toml(path) if path is not None else {}
    data = merge(data, file_data)
    for section, kind in (components or {}).items():
        data = apply_overrides(data, [f"{section}.kind={kind}"])
    overrides = list(overrides)
    split_named = "split" in file_data or any(o.startswith("split.") for o in overrides)
    chosen = components or {}
    if (
        not split_named
        and chosen.get("generator") == "none"
        and chosen.get("backbone", "none") != "none"
    ):
        data = apply_overrides(data, INDUCTIVE_DEFAULTS)
    data = apply_overrides(data, overrides)
    return structure_experiment(data, registry)


#: the split a graph backbone without a generator defaults to (MICRec / INMO protocol)
INDUCTIVE_DEFAULTS = (
    "split.kind=inductive",
    "split.unseen_user_fraction=0.2",
    "split.unseen_item_fraction=0.2",
)
