"""Shared fixtures."""

from __future__ import annotations

import pytest
import support

from cdr import experiment
from cdr.composition import PipelineKind


@pytest.fixture
def fake_pipelines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pipeline kind runs ``support.fake_pipeline`` (records its calls in CALLS)."""
    for kind in PipelineKind:
        monkeypatch.setitem(experiment.PIPELINES, kind, "support:fake_pipeline")
    support.CALLS.clear()
