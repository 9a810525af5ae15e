"""Search spaces in TOML: what ``cdr tune --space SPACE.toml`` samples.

```toml
sampler = "tpe"                 # or "grid" (every parameter then needs finite values)

[params."trainer.lr"]           # any dotted config key
type = "float"                  # float | int | categorical
low = 1e-4
high = 1e-2
log = true                      # log-uniform (float / int); default false

[params."generator.kind"]
type = "categorical"
choices = ["ddpm", "mapping"]

[params."generator.steps"]
type = "int"
low = 2
high = 50
step = 1                        # int / float, optional (not with log)
when = { "generator.kind" = "ddpm" }   # only when that key (sampled or the config's) is ddpm

[params."trainer.dim"]
type = "int"
grid = [16, 32, 64]             # the values grid sampling takes (any type; optional for
                                # categorical and stepped int ranges)
```

``when`` makes a parameter conditional on other keys, typically a component's ``kind``
(the old kind's keys would not fit a new one): ``{key = value}`` or ``{key = [v1, v2]}``;
the key is a parameter sampled earlier in the same trial, or else read from the base
config. Parameters are sampled so that every condition's parameter comes first; a
parameter whose kind is set in the same trial is applied after it. Grid sampling takes no
conditional parameters (run one grid per kind).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from cdr.config.loading import apply_overrides, read_toml, structure_experiment
from cdr.errors import CdrError, ConfigError
from cdr.registry import Registry

TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "grid")
#: an int range with a step is a grid by itself up to this many values
MAX_IMPLICIT_GRID = 1000
_KEYS = {"type", "low", "high", "log", "step", "choices", "grid", "when"}

Scalar = bool | int | float | str


@attrs.frozen
class Param:
    """One dimension of the space; ``when``: (key, allowed values) pairs, all must hold."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] = ()
    grid: tuple[Scalar, ...] | None = None
    when: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()

    def grid_values(self) -> tuple[Scalar, ...]:
        if self.grid is not None:
            return self.grid
        if self.type == "categorical":
            return self.choices
        if self.type == "int" and not self.log:
            assert self.low is not None and self.high is not None
            step = int(self.step or 1)
            if (int(self.high) - int(self.low)) // step + 1 <= MAX_IMPLICIT_GRID:
                return tuple(range(int(self.low), int(self.high) + 1, step))
        raise ConfigError(
            f"params.{self.key!r}: grid sampling needs finite values",
            hint="add grid = [v1, v2, ...] to this parameter",
        )

    def probe_values(self) -> tuple[Scalar, ...]:
        """Values that must each make a valid config (the bounds, every choice)."""
        if self.grid is not None:
            return self.grid
        if self.type == "categorical":
            return self.choices
        assert self.low is not None and self.high is not None
        return (self.low, self.high)


@attrs.frozen
class Space:
    params: tuple[Param, ...]  # in sampling order
    sampler: str = "tpe"
    source: dict[str, Any] = attrs.field(factory=dict, eq=False)

    def grid(self) -> dict[str, list[Scalar]]:
        return {p.key: list(p.grid_values()) for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def _where(key: str) -> str:
    return f"params.{key!r}"


def _number(value: Any, where: str, name: str, integer: bool) -> float | int:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}.{name}: expected {'an integer' if integer else 'a number'}"
                          f", got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}.{name}: {value!r} is not finite")
    return value


def _values(value: Any, where: str) -> tuple[Scalar, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: needs at least one value")
    for item in items:
        if not isinstance(item, bool | int | float | str):
            raise ConfigError(f"{where}: {item!r} is not a number, string or boolean")
    return tuple(items)


def parse_param(key: str, data: Any) -> Param:
    where = _where(key)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table (type = ..., low = ..., ...)")
    extra = sorted(set(data) - _KEYS)
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(extra)}")
    kind = data.get("type", "categorical" if "choices" in data else None)
    if kind not in TYPES:
        raise ConfigError(f"{where}.type: {kind!r} is not one of {', '.join(TYPES)}")
    log = data.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    grid = _values(data["grid"], f"{where}.grid") if "grid" in data else None
    when = []
    for other, allowed in (data.get("when") or {}).items():
        if other == key:
            raise ConfigError(f"{where}.when: a parameter cannot depend on itself")
        when.append((str(other), _values(allowed, f"{where}.when.{other!r}")))
    if not isinstance(data.get("when", {}), Mapping):
        raise ConfigError(f"{where}.when: expected a table {{key = value}}")
    if kind == "categorical":
        if "choices" not in data and grid is None:
            raise ConfigError(f"{where}: a categorical parameter needs choices = [...]")
        choices = _values(data.get("choices", list(grid or ())), f"{where}.choices")
        for name in ("low", "high", "step"):
            if name in data:
                raise ConfigError(f"{where}.{name}: not used by a categorical parameter")
        return Param(key, kind, log=False, choices=choices, grid=grid, when=tuple(when))
    integer = kind == "int"
    for name in ("low", "high"):
        if name not in data:
            raise ConfigError(f"{where}.{name}: required for a {kind} parameter")
    low = _number(data["low"], where, "low", integer)
    high = _number(data["high"], where, "high", integer)
    if low > high:
        raise ConfigError(f"{where}: low {low!r} is above high {high!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: a log scale needs low > 0, got {low!r}")
    step = _number(data["step"], where, "step", integer) if "step" in data else None
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}.step: must be > 0 and cannot be combined with log")
    if "choices" in data:
        raise ConfigError(f"{where}.choices: only for type = \"categorical\"")
    return Param(key, kind, low, high, log, step, (), grid, tuple(when))


def _order(params: dict[str, Param]) -> tuple[Param, ...]:
    """Conditions' parameters first; a cycle is an error naming it."""
    done: list[Param] = []
    state: dict[str, int] = {}

    def visit(key: str, path: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise ConfigError(f"params: conditions form a cycle ({' -> '.join((*path, key))})")
        state[key] = 1
        for other, _ in params[key].when:
            if other in params:
                visit(other, (*path, key))
        state[key] = 2
        done.append(params[key])

    for key in params:  # file order where conditions allow
        visit(key, ())
    return tuple(done)


def parse_space(data: Mapping[str, Any]) -> Space:
    extra = sorted(set(data) - {"sampler", "params"})
    if extra:
        raise ConfigError(f"space: unknown key(s) {', '.join(extra)} (expected sampler, params)")
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"space.sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    table = data.get("params")
    if not isinstance(table, Mapping) or not table:
        raise ConfigError("space: no [params.\"dotted.key\"] tables; nothing to tune")
    params = {str(key): parse_param(str(key), value) for key, value in table.items()}
    space = Space(_order(params), sampler, dict(data))
    if sampler == "grid":
        conditional = [p.key for p in space.params if p.when]
        if conditional:
            raise ConfigError(f"{_where(conditional[0])}.when: grid sampling takes no "
                              "conditional parameters", hint="run one grid per kind")
        space.grid()  # every parameter has finite values
    return space


def load_space(path: Path) -> Space:
    return parse_space(read_toml(path))


def space_from_text(text: str) -> Space:
    try:
        return parse_space(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"space: not valid TOML ({exc})") from exc


def literal(value: Scalar) -> str:
    """``value`` as a TOML literal for a ``dotted.key=value`` override."""
    return tomli_w.dumps({"v": value})[len("v = "):].strip()


def lookup(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def active(param: Param, chosen: Mapping[str, Scalar], base: Mapping[str, Any]) -> bool:
    """Whether ``param``'s conditions hold for the values chosen so far (else the base)."""
    for key, allowed in param.when:
        value = chosen[key] if key in chosen else lookup(base, key)
        if value not in allowed:
            return False
    return True


def suggest(space: Space, trial: Any, base: Mapping[str, Any]) -> list[str]:
    """Sample one configuration from an Optuna ``trial``: its ``dotted.key=value`` overrides
    (a component's ``kind`` before the keys of that component)."""
    chosen: dict[str, Scalar] = {}
    for param in space.params:
        if not active(param, chosen, base):
            continue
        value: Scalar
        if space.sampler == "grid" or param.type == "categorical":
            values = param.grid_values() if space.sampler == "grid" else param.choices
            value = trial.suggest_categorical(param.key, list(values))
        elif param.type == "int":
            value = trial.suggest_int(param.key, int(param.low or 0), int(param.high or 0),
                                      step=int(param.step or 1), log=param.log)
        else:
            value = trial.suggest_float(param.key, float(param.low or 0),
                                        float(param.high or 0), step=param.step, log=param.log)
        chosen[param.key] = value
    return [f"{key}={literal(value)}" for key, value in _kinds_first(chosen)]


def _kinds_first(chosen: Mapping[str, Scalar]) -> list[tuple[str, Scalar]]:
    """A ``kind`` resets its table, so it goes before the other keys of that table."""
    return sorted(chosen.items(), key=lambda kv: not kv[0].endswith(".kind"))


def check_space(space: Space, base: Mapping[str, Any], registry: Registry) -> None:
    """ConfigError (naming the parameter) if a bound or choice makes an invalid config."""
    for param in space.params:
        conditions = [f"{key}={literal(values[0])}" for key, values in param.when]
        for value in param.probe_values():
            overrides = [*conditions, f"{param.key}={literal(value)}"]
            try:
                structure_experiment(apply_overrides(dict(base), overrides), registry)
            except CdrError as exc:
                raise ConfigError(f"{_where(param.key)}: {param.key} = {value!r} gives an "
                                  f"invalid config ({exc})") from exc
