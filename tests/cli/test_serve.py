from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from cdr.cli import server as cli_server
from cdr.cli.app import app
from cdr.serving.server import SETTINGS_ENV


def test_serve_splits_the_users_thread_limit_among_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two servers side by side on a 2-core machine, each started with OMP_NUM_THREADS=1,
    must not each take both cores (the thread count the workers get is what is printed)."""
    metadata = {"users": 3, "domains": {"target": {"items": 2}}}
    monkeypatch.setattr(cli_server, "load_served", lambda *a: SimpleNamespace(metadata=metadata))
    monkeypatch.setattr(cli_server, "create_app", lambda served, threads: threads)
    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: started.append(target))
    monkeypatch.setattr(cli_server.os, "cpu_count", lambda: 8)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    bundle = str(tmp_path / "model.cdr")
    runner = CliRunner()

    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    two = runner.invoke(app, ["serve", bundle, "--workers", "2"])
    assert two.exit_code == 0, two.output
    assert "2 worker(s), 2 thread(s) each" in two.stderr
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    one = runner.invoke(app, ["serve", bundle])
    assert one.exit_code == 0 and started[-1] == 4  # create_app got 4 threads
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = runner.invoke(app, ["serve", bundle, "--workers", "2"])
    assert "2 worker(s), 4 thread(s) each" in cores.stderr
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
