"""Shared fixtures."""

from __future__ import annotations

from typing import Any

import pytest
import support

from cdr import experiment


@pytest.fixture
def fake_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every protocol runs ``support.fake_pipeline`` (records its calls in CALLS)."""

    def fake(protocol: Any, cfg: Any, registry: Any, run_dir: Any, reporter: Any = None) -> Any:
        return support.fake_pipeline(cfg, registry, run_dir, reporter)

    monkeypatch.setattr(experiment, "run_protocol", fake)
    support.CALLS.clear()
