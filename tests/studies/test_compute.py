"""The run time a reproduction reports is the sum its runs recorded, each run once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdr.studies.compute import RunTime, cell_time, render_run_time, trial_time


def _run(path: Path, status: dict[str, object]) -> Path:
    path.mkdir(parents=True)
    (path / "status.json").write_text(json.dumps(status))
    return path


def test_cells_are_summed_once_each(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {"state": "done", "seconds": 100.5})
    b = _run(tmp_path / "b", {"state": "done", "seconds": 3500})
    running = _run(tmp_path / "c", {"state": "running"})
    # a run two tables share (the same directory, once as a relative path) counts once
    broken = tmp_path / "d"
    broken.mkdir()
    (broken / "status.json").write_text("{not json")
    time = cell_time([a, b, str(a), running, tmp_path / "missing", broken])
    assert time == RunTime(runs=2, seconds=3600.5, unknown=3)
    assert time.hours == pytest.approx(3600.5 / 3600)


def test_trials_are_read_from_each_study(tmp_path: Path) -> None:
    study = tmp_path / "s1"
    study.mkdir()
    (study / "trials.csv").write_text(
        "number,state,value,seconds,run_dir\n0,complete,1.0,60.0,trials/trial-0000\n"
        "1,pruned,,30.5,trials/trial-0001\n2,running,,,trials/trial-0002\n"
        "3,repeat,,0.02,,\n"  # a repeated draw: told failed at once, never run
    )
    (tmp_path / "empty").mkdir()  # a study that wrote no trials.csv yet
    assert trial_time([study, study, tmp_path / "empty"]) == RunTime(2, 90.5, 1)


def test_the_section_states_the_sums() -> None:
    text = render_run_time(RunTime(90, 9000.0), RunTime(40, 7200.0, 1))
    assert text.startswith("### Run time")
    assert "90 cell runs 2.50 h" in text and "40 tuning trials 2.00 h" in text
    assert "4.50 h in all" in text and "1 runs recorded no time" in text
    assert "tuning" not in render_run_time(RunTime(3, 36.0), None)
