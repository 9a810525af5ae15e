"""Bad configs, generated: every scalar field of every registered component and section
gets wrong-typed and extreme values; config files get truncated and byte-flipped. Each
case ends in a valid config or one ConfigError line naming the dotted field (or the
file): never another exception, never a silently coerced value.

Cases per input kind (max_examples below): scalar fields 300, config files 150,
CLI runs 4.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.config import ExperimentConfig, load_experiment
from cdr.config.loading import config_to_dict, read_toml
from cdr.errors import ConfigError
from cdr.registry import Registry

REGISTRY = Registry()
SECTIONS = ("generator", "backbone", "aligner", "dataset", "scorer")
GROUP = {
    "generator": "generators",
    "backbone": "backbones",
    "aligner": "aligners",
    "dataset": "datasets",
    "scorer": "scorers",
}


def _scalar_fields() -> list[tuple[tuple[str, ...], str, type]]:
    """(overrides selecting the component, dotted field, field type) for every int, float
    and bool field of every built-in component config and of the fixed sections."""
    out: list[tuple[tuple[str, ...], str, type]] = []

    def walk(cls: type, prefix: str, select: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(cls)
        for field in attrs.fields(cls):
            kind = hints[field.name]
            if kind in (int, float, bool):
                out.append((select, f"{prefix}{field.name}", kind))

    for section in SECTIONS:
        for name in REGISTRY.names(GROUP[section]):
            cls = REGISTRY.get(GROUP[section], name).config_cls
            walk(cls, f"{section}.", (f"{section}.kind={name}",))
    hints = typing.get_type_hints(ExperimentConfig)
    for section in ("split", "trainer", "evaluation"):
        walk(hints[section], f"{section}.", ())
    walk(ExperimentConfig, "", ())
    return out


FIELDS = _scalar_fields()
BAD = {
    int: ["1.5", "true", '"3"', "nan", "[1]", "{a = 1}"],
    float: ["nan", "inf", "-inf", "true", '"0.1"', "[0.1]"],
    bool: ["1", "0", '"true"', "1.5"],
}


def test_every_scalar_field_is_covered() -> None:
    names = {name for _, name, _ in FIELDS}
    assert {"trainer.lr", "trainer.epochs", "generator.beta_start", "split.beta"} <= names
    assert len(FIELDS) > 40


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), st.data())
def test_wrong_scalars_are_one_line_errors_naming_the_field(
    field: tuple[tuple[str, ...], str, type], data: st.DataObject
) -> None:
    select, name, kind = field
    value = data.draw(st.sampled_from(BAD[kind]))
    with pytest.raises(ConfigError) as info:
        load_experiment(None, REGISTRY, [*select, f"{name}={value}"])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name}:") or f"; {name}:" in message, message


def _valid_toml() -> bytes:
    cfg = load_experiment(None, REGISTRY, ["generator.kind=ddpm", "trainer.epochs=3"])
    return tomli_w.dumps(config_to_dict(cfg, REGISTRY)).encode()


VALID = _valid_toml()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(0, len(VALID)),
    flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), max_size=3),
)
def test_damaged_config_files_are_valid_or_one_line_errors(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(VALID[:cut])
    for where, mask in flips:
        if where < len(data):
            data[where] ^= mask
    path = tmp_path / "exp.toml"
    path.write_bytes(bytes(data))
    try:
        cfg = load_experiment(path, REGISTRY)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    # accepted: then every number in it is finite and every int a real int
    flat = config_to_dict(cfg, REGISTRY)

    def check(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                check(v)
        elif isinstance(node, list | tuple):
            for v in node:
                check(v)
        elif isinstance(node, float):
            assert math.isfinite(node)

    check(flat)


def test_non_utf8_and_directory_configs_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_toml(path)
    with pytest.raises(ConfigError, match="is a directory"):
        read_toml(tmp_path)


runner = CliRunner()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "/abs"])
def test_run_names_cannot_leave_the_output_directory(tmp_path: Path, name: str) -> None:
    out = tmp_path / "runs" / "inner"
    result = runner.invoke(
        app,
        ["compose", "--set", f"name={name}", "--set", f"output_dir={out}"],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 1, result.output
    assert "error: name:" in result.stderr and "not a plain name" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    # nothing was created, inside or outside
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
