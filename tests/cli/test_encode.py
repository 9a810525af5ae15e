from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdr.cli.app import app

SMALL = ["--set", "dataset.size=tiny", "--set", "dataset.images=false"]


def test_encode_then_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["encode", *SMALL, "--entity", "item"])
    assert first.exit_code == 0, first.output
    assert "encoded" in first.output and "cache hit" not in first.output
    second = runner.invoke(app, ["encode", *SMALL, "--entity", "item", "--domain", "target"])
    assert second.exit_code == 0, second.output
    assert "cache hit" in second.output and "(source)" not in second.output
    assert any((tmp_path / ".cache" / "features").rglob("item.safetensors"))


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--shard", "3/2"], "shard"), (["--entity", "items"], "--entity")],
)
def test_bad_options_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["encode", *SMALL, *args])
    assert result.exit_code == 1 and message in result.output
