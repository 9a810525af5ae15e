from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cdr.cli.app import app

runner = CliRunner()


def test_build_describe_and_list(tmp_path: Path) -> None:
    cache = str(tmp_path)
    result = runner.invoke(app, ["datasets", "build", "synthetic", "--set", "size=tiny",
                                 "--set", "dataset.images=false", "--cache-root", cache])
    assert result.exit_code == 0, result.output
    assert "overlapping users" in result.output and "side users" in result.output
    assert "cold-start test users (beta 0.2)" in result.output
    built = [p for p in tmp_path.iterdir() if p.name.startswith("synthetic-")]
    assert len(built) == 1
    result = runner.invoke(app, ["datasets", "describe", str(built[0]), "--beta", "0.5"])
    assert result.exit_code == 0 and "beta 0.5" in result.output
    assert "1,000" not in result.output and "30" in result.output  # 30 overlapping users
    result = runner.invoke(app, ["datasets", "list", "--cache-root", cache])
    assert result.exit_code == 0
    for name in ("synthetic", "ml-100k-genres", "recbole-atomic", "amazon2018", "amazon2023",
                 built[0].name[:12]):
        assert name in result.output


def test_bad_input_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["datasets", "build", "synthetic", "--set", "size=huge",
                                 "--cache-root", str(tmp_path)])
    assert result.exit_code == 1
    assert "dataset.size" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["datasets", "build", "nope", "--cache-root", str(tmp_path)])
    assert result.exit_code == 1 and "unknown dataset 'nope'" in result.output
    result = runner.invoke(app, ["datasets", "describe", str(tmp_path)])
    assert result.exit_code == 1 and "manifest.json: missing" in result.output
