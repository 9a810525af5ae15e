from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cdr import __version__
from cdr.cli.app import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["compose", "--help"],
        ["components", "--help"],
        ["config", "--help"],
        ["config", "show", "--help"],
        ["config", "validate", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, args
        assert "Usage" in result.stdout


def test_components_lists_builtins_with_origin() -> None:
    result = runner.invoke(app, ["components"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "identity" in result.stdout
    assert "built-in" in result.stdout


def test_unknown_component_is_one_line_error() -> None:
    result = runner.invoke(
        app, ["compose", "--scorer", "cosine", "--dry-run"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 1
    assert "unknown scorer 'cosine'; known:" in result.stderr
    assert "Traceback" not in result.output


def test_mistyped_config_key_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text("[trainer]\nepohcs = 3\n")
    result = runner.invoke(app, ["config", "validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "trainer: unknown key(s) epohcs" in result.stderr
    assert "Traceback" not in result.output


def test_missing_config_file_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "validate", str(tmp_path / "nope.toml")])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
