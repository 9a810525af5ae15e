"""``cdr tune`` end to end: two worker processes, SIGKILL of the tune process midway, the
same command again finishes the study without repeating finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.tuning.study import trial_dir

runner = CliRunner()
SPACE = """
[params."trainer.lr"]
type = "float"
low = 1e-3
high = 5e-2
log = true

[params."backbone.num_layers"]
type = "int"
low = 1
high = 3
when = { "backbone.kind" = "lightgcn" }
"""
SETS = ["dataset.size=tiny", "split.kind=single-domain", "generator.kind=none",
        "backbone.kind=lightgcn", "trainer.epochs=5"]


def command(tmp_path: Path, trials: int) -> list[str]:
    sets = [arg for item in SETS for arg in ("--set", item)]
    return [sys.executable, "-c", "from cdr.cli.app import main; main()", "tune",
            "--space", str(tmp_path / "space.toml"), "--trials", str(trials), "--jobs", "2",
            "--out", str(tmp_path / "study"), "--tracking", "tensorboard", *sets]


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{tmp_path / 'study' / 'study.db'}"
    try:
        return optuna.load_study(study_name="cdr-tune", storage=storage).get_trials()
    except (KeyError, Exception):  # not created yet
        return []


def _run_dir(tmp_path: Path, trial: optuna.trial.FrozenTrial) -> Path:
    """A trial's run directory (stored relative to the study directory)."""
    return trial_dir(tmp_path / "study", trial.user_attrs.get("run_dir", "/nonexistent"))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_study_resumes_to_completion(tmp_path: Path) -> None:
    (tmp_path / "space.toml").write_text(SPACE)
    proc = subprocess.Popen(command(tmp_path, 6), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 400
    while time.time() < deadline:
        trials = _trials(tmp_path)
        done = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        workers = _children(proc.pid)  # before the check: the kill follows it at once
        if done and running and (_run_dir(tmp_path, running[0]) / "status.json").exists():
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    else:
        pytest.fail("the study never had a finished and a running trial")
    # (on a heavily loaded machine a slow ps between the check and the kill let the running
    # trial finish and a fresh, unstarted one be the only one killed)
    os.kill(proc.pid, signal.SIGKILL)
    assert len(workers) >= 2
    proc.wait()
    at_kill = {t.number: t.state for t in _trials(tmp_path)}
    # the workers die with the tune process: nothing moves in the study any more
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    time.sleep(3)
    before = {t.number: t for t in _trials(tmp_path)}
    assert {n: t.state for n, t in before.items()} == at_kill
    killed = [t for t in before.values() if t.state == TrialState.RUNNING]
    finished = {t.number: _run_dir(tmp_path, t) for t in before.values()
                if t.state.is_finished()}
    stamps = {n: (d / "status.json").stat().st_mtime_ns for n, d in finished.items()}
    assert killed and finished
    # which killed trials had begun their run: read now, before the retries write theirs
    started = [t for t in killed
               if (_run_dir(tmp_path, t) / "status.json").exists()]
    # the same command again
    result = subprocess.run(command(tmp_path, 6), cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left running by a killed process" in result.stdout
    trials = _trials(tmp_path)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 6, [(t.number, t.state.name, t.user_attrs, t.system_attrs)
                            for t in trials]
    assert started  # the one whose run had begun (waited for above)
    for t in killed:  # failed, then retried (a trial killed before sampling has no params)
        retry = next(r for r in trials if r.system_attrs.get("failed_trial") == t.number)
        assert retry.state.is_finished()
        if t in started:  # same parameters, continuing its run directory
            # (a trial killed before its run began gets a fresh run in the same place)
            assert retry.params == t.params
            assert retry.user_attrs["run_dir"] == t.user_attrs["run_dir"]
            assert retry.user_attrs.get("resumed") is True
    for number, run_dir in finished.items():  # finished trials were not run again
        assert (run_dir / "status.json").stat().st_mtime_ns == stamps[number]
    study = tmp_path / "study"
    summary = json.loads((study / "summary.json").read_text())
    assert summary["metric"] == "val_ndcg@20" and summary["direction"] == "maximize"
    assert summary["protocol"]["masked_at_test"] == ["train", "validation"]
    assert "target/ndcg@20" in summary["best"]["test_metrics"]
    assert not any(k.startswith("val") for k in summary["best"]["test_metrics"])
    for name in ("trials.csv", "best.toml", "optimization_history.png"):
        assert (study / name).is_file()
    # paths relative to the study directory, so a committed or moved study names no machine
    assert summary["storage"] == "study.db"
    assert not Path(summary["best"]["run_dir"]).is_absolute()
    best = study / summary["best"]["run_dir"]
    assert best.parent == study / "trials"
    assert (best / "tensorboard").is_dir()  # --tracking reached the trials
    assert (study / "best.toml").read_text().split("\n", 1)[1] == (best / "config.toml"
                                                                  ).read_text()


def test_refusals_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "space.toml").write_text(SPACE)
    base = ["tune", "--space", str(tmp_path / "space.toml"), "--out", str(tmp_path / "s")]
    sets = [arg for item in SETS for arg in ("--set", item)]
    result = runner.invoke(app, [*base, *sets, "--metric", "target/ndcg@20"])
    assert result.exit_code == 1 and "never on a test metric" in result.output
    result = runner.invoke(app, [*base, "--jobs", "0"])
    assert result.exit_code == 1 and "at least 1" in result.output
    result = runner.invoke(app, [*base, "--tracking", "mlflow"])
    assert result.exit_code == 1 and "--tracking" in result.output
    (tmp_path / "bad.toml").write_text('[params."trainer.epochs"]\ntype = "int"\nlow = 0\n'
                                       "high = 3\n")
    result = runner.invoke(app, ["tune", "--space", str(tmp_path / "bad.toml"), "--out",
                                 str(tmp_path / "s")])
    assert result.exit_code == 1 and "trainer.epochs = 0" in result.output
    assert not (tmp_path / "s").exists()
