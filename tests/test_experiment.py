from __future__ import annotations

import json
from pathlib import Path

import pytest
import support
from support import FAKE_OVERRIDES, registry_with_fakes

from cdr.config.loading import apply_overrides, structure_experiment
from cdr.errors import RunError
from cdr.experiment import resume_experiment, run_experiment

REGISTRY = registry_with_fakes()
BASE = list(FAKE_OVERRIDES)


pytestmark = pytest.mark.usefixtures("fake_pipelines")


def test_run_writes_config_status_and_metrics(tmp_path: Path) -> None:
    cfg = structure_experiment(apply_overrides({}, [*BASE, "seed=3"]), REGISTRY)
    record = run_experiment(cfg, REGISTRY, run_dir=tmp_path / "run")
    assert record.metrics["ndcg@20"] == pytest.approx(0.13)
    assert (tmp_path / "run" / "config.toml").read_text().startswith("name")
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "done"


def test_existing_run_dir_is_never_overwritten(tmp_path: Path) -> None:
    cfg = structure_experiment(apply_overrides({}, BASE), REGISTRY)
    run_experiment(cfg, REGISTRY, run_dir=tmp_path / "run")
    with pytest.raises(RunError, match="already exists; runs are never overwritten"):
        run_experiment(cfg, REGISTRY, run_dir=tmp_path / "run")


def test_default_run_dirs_are_fresh(tmp_path: Path) -> None:
    cfg = structure_experiment(
        apply_overrides({}, [*BASE, f"output_dir={json.dumps(str(tmp_path))}"]), REGISTRY
    )
    first = run_experiment(cfg, REGISTRY).run_dir
    second = run_experiment(cfg, REGISTRY).run_dir
    assert first != second and first.parent == second.parent == tmp_path


def test_resume_finishes_an_interrupted_run_and_returns_a_finished_one(tmp_path: Path) -> None:
    cfg = structure_experiment(apply_overrides({}, BASE), REGISTRY)
    run_dir = tmp_path / "run"
    run_experiment(cfg, REGISTRY, run_dir=run_dir)
    assert len(support.CALLS) == 1
    resume_experiment(run_dir, REGISTRY)  # finished: nothing rerun
    assert len(support.CALLS) == 1
    (run_dir / "status.json").write_text(json.dumps({"state": "running"}))  # as if killed
    record = resume_experiment(run_dir, REGISTRY)
    assert len(support.CALLS) == 2 and record.metrics["ndcg@20"] == pytest.approx(0.1)


def test_resume_of_a_non_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"config\.toml: missing"):
        resume_experiment(tmp_path, REGISTRY)
