"""The study loop in-process, on a fake protocol whose validation curve depends on the
learning rate: objective from metrics.json, pruning on the per-epoch validation value,
pruned run directories, resuming a killed study, grids, outputs."""

from __future__ import annotations

import csv
import fcntl
import json
import math
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import optuna
import pytest
from optuna.trial import TrialState

from cdr import experiment
from cdr.config.loading import default_data
from cdr.errors import ConfigError
from cdr.locking import flock
from cdr.runs import METRICS, write_json
from cdr.tuning import study as tuning
from cdr.tuning.space import space_from_text
from cdr.tuning.study import (
    TuneSettings,
    check_metric,
    counts,
    default_storage,
    open_storage,
    open_study,
    read_metric,
    recover,
    work,
    write_outputs,
)

SPACE = """
[params."trainer.lr"]
type = "float"
low = 1e-4
high = 1e-1
log = true
"""
TASK = "stage 2: overlapping users"
EPOCHS = 6


def curve(lr: float, epoch: int) -> float:
    """Validation RMSE: best at lr = 10**-2.5, improving with epochs."""
    return abs(math.log10(lr) + 2.5) + 1.0 / (epoch + 1)


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every run is the fake protocol; records (run dir name, first epoch) per session."""
    sessions: list[tuple[str, int]] = []

    def fake(protocol: Any, cfg: Any, registry: Any, run_dir: Path, reporter: Any = None) -> Any:
        done = run_dir / "epochs.json"
        start = json.loads(done.read_text())["epochs"] if done.exists() else 0
        sessions.append((run_dir.name, start))
        write_json(run_dir / "protocol.json", {"protocol": "fake", "masked_at_test": ["train"]})
        reporter(TASK, start, EPOCHS)
        for epoch in range(start, EPOCHS):
            val = curve(cfg.trainer.lr, epoch)
            reporter(TASK, 1, None, loss=val / 2, val=val)
            write_json(done, {"epochs": epoch + 1})  # a checkpoint: a resume continues here
        metrics = {"val_rmse": val, "rmse": 2 * val, "stage2_epochs": EPOCHS}
        write_json(run_dir / METRICS, metrics)
        return metrics

    monkeypatch.setattr(experiment, "run_protocol", fake)
    return sessions


def settings(out: Path, trials: int, space: str = SPACE, pruner: str = "median") -> TuneSettings:
    return TuneSettings(
        out=out,
        base=default_data(),
        space=space_from_text(space),
        trials=trials,
        metric="val_rmse",
        direction="minimize",
        storage=default_storage(out),
        local_storage=True,
        pruner=pruner,
        warmup=2,
    )


def _study(s: TuneSettings) -> optuna.Study:
    s.out.mkdir(parents=True, exist_ok=True)
    return open_study(s, open_storage(s.storage))


def test_objective_pruning_and_outputs(tmp_path: Path, fake_runs: Any) -> None:
    s = settings(tmp_path / "study", 14)
    study = _study(s)
    work(s, 0)
    trials = study.get_trials()
    assert counts(study) == (14, 0, 0)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert complete and pruned
    for t in complete:  # the objective is the run's metrics.json validation value
        run_dir = tuning.trial_dir(s.out, t.user_attrs["run_dir"])
        assert t.value == json.loads((run_dir / METRICS).read_text())["val_rmse"]
        assert t.value == pytest.approx(curve(t.params["trainer.lr"], EPOCHS - 1))
        # every evaluated epoch was reported, step = epoch
        assert sorted(t.intermediate_values) == list(range(EPOCHS))
    for t in pruned:  # a pruned trial is a run directory whose status says so
        status = json.loads((tuning.trial_dir(s.out, t.user_attrs["run_dir"]) / "status.json"
                             ).read_text())
        assert status["state"] == "pruned"
        assert f"{TASK}, epoch {t.last_step + 1}" in status["reason"]
        assert t.last_step + 1 >= s.warmup and t.last_step < EPOCHS - 1
    result = write_outputs(study, s)
    best = min(complete, key=lambda t: t.value)
    assert result.best_number == best.number and result.best_value == best.value
    # test metrics come from the best run's directory; validation ones are not among them
    assert result.test_metrics == {"rmse": pytest.approx(2 * best.value), "stage2_epochs": 6}
    text = (s.out / "best.toml").read_text()
    assert text.splitlines()[0].startswith(f"# best trial {best.number} ")
    assert text.split("\n", 1)[1] == (
        tuning.trial_dir(s.out, best.user_attrs["run_dir"]) / "config.toml").read_text()
    rows = (s.out / "trials.csv").read_text().splitlines()
    assert len(rows) == 15 and rows[0].startswith("number,state,value,param:trainer.lr")
    summary = json.loads((s.out / "summary.json").read_text())
    assert summary["trials"] == {"complete": len(complete), "pruned": len(pruned)}
    assert summary["protocol"] == {"protocol": "fake", "masked_at_test": ["train"]}
    for name in ("optimization_history", "param_importances", "intermediate_values"):
        assert (s.out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # the same command again: the study is complete, nothing runs
    before = len(fake_runs)
    work(s, 0)
    assert len(fake_runs) == before


def test_a_moved_study_directory_still_finds_its_trials(
    tmp_path: Path, fake_runs: Any
) -> None:
    s = settings(tmp_path / "study", 3)
    _study(s)
    work(s, 0)
    moved = settings(tmp_path / "elsewhere" / "study", 3)
    moved.out.parent.mkdir()
    s.out.rename(moved.out)
    def stored(db: sqlite3.Connection) -> list[str]:
        return [json.loads(v) for (v,) in db.execute(
            "SELECT value_json FROM trial_user_attributes WHERE key = 'run_dir'")]

    with sqlite3.connect(moved.out / "study.db") as db:  # relative to the study directory
        assert sorted(stored(db)) == [f"trials/trial-000{n}" for n in range(3)]
    work(moved, 0)
    assert write_outputs(open_study(moved, open_storage(moved.storage)), moved
                         ).best_run_dir.parent == moved.out / "trials"
    # a study written before run directories were stored relative: absolute, now gone
    with sqlite3.connect(moved.out / "study.db") as db:
        db.execute("UPDATE trial_user_attributes SET value_json = json_quote("
                   "? || json_extract(value_json, '$')) WHERE key = 'run_dir'",
                   (f"{s.out}/",))
        assert all(v.startswith(str(s.out)) for v in stored(db))
    study = open_study(moved, open_storage(moved.storage))
    before = len(fake_runs)
    work(moved, 0)  # complete: nothing runs again
    result = write_outputs(study, moved)
    assert len(fake_runs) == before
    assert result.best_run_dir.parent == moved.out / "trials"
    assert (moved.out / "best.toml").read_text().split("\n", 1)[1] == (
        result.best_run_dir / "config.toml").read_text()
    with (moved.out / "trials.csv").open() as f:  # the CSV names the directories found
        assert sorted(r["run_dir"] for r in csv.DictReader(f)) == [
            f"trials/trial-000{n}" for n in range(3)]
    assert not s.out.exists()


def test_no_pruning_when_the_pruner_is_none(tmp_path: Path, fake_runs: Any) -> None:
    s = settings(tmp_path / "study", 10, pruner="none")
    study = _study(s)
    work(s, 0)
    assert {t.state for t in study.get_trials()} == {TrialState.COMPLETE}


def test_a_killed_study_resumes_without_repeating_finished_trials(
    tmp_path: Path, fake_runs: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(tmp_path / "study", 5)
    study = _study(s)
    # two trials finish, then a third is killed after three epochs (SIGKILL: nothing told)
    work(settings(s.out, 2), 0)
    original = tuning.PruningReporter.__call__

    def killed(self: Any, task: str, advance: int = 1, total: Any = None, **info: Any) -> None:
        original(self, task, advance, total, **info)
        if info and self.steps._next[task] == 3:
            raise SystemExit("killed")

    monkeypatch.setattr(tuning.PruningReporter, "__call__", killed)
    with pytest.raises(SystemExit):
        work(s, 0)
    monkeypatch.setattr(tuning.PruningReporter, "__call__", original)
    study.get_trials()
    stale = next(t for t in study.get_trials() if t.number == 2)
    # the killed process told nothing; its heartbeat thread died with it
    study._storage.set_trial_state_values(stale._trial_id, TrialState.RUNNING)
    assert counts(study) == (2, 1, 0)
    finished_dirs = {t.user_attrs["run_dir"] for t in study.get_trials()[:2]}
    assert recover(study, open_storage(s.storage)) == [2]
    work(s, 0)
    trials = study.get_trials()
    assert counts(study) == (5, 0, 0)
    # five trials ran to the end: the killed one counts once, as its retry
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 5
    assert trials[2].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 2)
    # same parameters, the same run directory continued after its last checkpoint
    assert retry.params == trials[2].params
    assert retry.user_attrs["run_dir"] == trials[2].user_attrs["run_dir"]
    assert retry.user_attrs["resumed"] is True
    name = Path(retry.user_attrs["run_dir"]).name
    # killed while reporting its third epoch: two epochs were checkpointed
    assert [start for run, start in fake_runs if run == name] == [0, 2]
    assert tuning.trial_rows(study, s.out)[2]["state"] == "retried"
    # finished trials were not run again
    for run_dir in finished_dirs:
        assert [r for r, _ in fake_runs].count(Path(run_dir).name) == 1


def test_grid_runs_each_point_once(tmp_path: Path, fake_runs: Any) -> None:
    space = 'sampler = "grid"\n[params."trainer.lr"]\ntype = "float"\nlow = 1e-4\nhigh = 1e-1\n'
    s = settings(tmp_path / "study", 10, space + "grid = [0.001, 0.003, 0.01]\n", pruner="none")
    assert s.target == 3
    study = _study(s)
    work(s, 0)
    assert sorted(t.params["trainer.lr"] for t in study.get_trials()) == [0.001, 0.003, 0.01]


def test_metric_rules(tmp_path: Path) -> None:
    for name in ("val_rmse", "val_ndcg@20", "stage0_val_rmse", "target/val_ndcg@20"):
        assert check_metric(name) == name
    for name in ("rmse", "ndcg@20", "target/recall@20", "interval"):
        with pytest.raises(ConfigError, match="never on a test metric"):
            check_metric(name)
    write_json(tmp_path / METRICS, {"val_rmse": 1.0, "stage0_val_rmse": 2.0, "rmse": 3.0,
                                    "val_mae": None})
    assert read_metric(tmp_path, "val_rmse") == 1.0
    assert math.isnan(read_metric(tmp_path, "val_mae"))
    with pytest.raises(ConfigError, match="validation metrics: stage0_val_rmse, val_mae, val_rmse"):
        read_metric(tmp_path, "val_ndcg@20")


def test_a_study_is_resumed_only_with_the_same_experiment(tmp_path: Path) -> None:
    s = settings(tmp_path / "study", 3)
    _study(s)
    other = settings(s.out, 3, SPACE.replace("1e-1", "1e-2"))
    with pytest.raises(ConfigError, match="made with another space"):
        _study(other)
    _study(settings(s.out, 30))  # more trials: fine


def test_the_storage_is_created_under_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes reaching a new study together must not both create its SQLite schema
    (optuna then fails one of them with an IntegrityError): run_study opens the storage
    holding the study directory's open lock."""
    s = settings(tmp_path / "study", 1)
    held: list[bool] = []

    def opening(url: str) -> Any:
        with flock(s.out / tuning.OPEN_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB) as got:
            held.append(not got)  # another open file description holds it: ours is out
        raise RuntimeError("stop here")

    monkeypatch.setattr(tuning, "open_storage", opening)
    with pytest.raises(RuntimeError, match="stop here"):
        tuning.run_study(s, 1)
    assert held == [True]


def test_workers_take_the_users_thread_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """OMP_NUM_THREADS caps the torch threads of tune workers (two studies side by side on a
    2-core machine must not each take both cores)."""
    threads: list[int] = []

    class FakeProcess:
        def __init__(self, target: object, args: tuple[Any, ...], daemon: bool) -> None:
            threads.append(args[3])

        def start(self) -> None: ...

        def is_alive(self) -> bool:
            return False

    class Context:
        Process = FakeProcess

    monkeypatch.setattr(tuning.multiprocessing, "get_context", lambda method: Context())
    monkeypatch.setattr(tuning, "counts", lambda study: (0, 0, 0))
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    settings: Any = SimpleNamespace(target=4)
    tuning._run_workers(settings, 2, cast(Any, None), lambda *a, **k: None)
    assert threads == [3, 3]


def _asked(s: TuneSettings, askers: int, n: int) -> list[dict[str, Any]]:
    """Params of ``n`` trials asked in turn by ``askers`` study objects (processes) sharing
    ``s``'s storage, none of the trials finished."""
    from cdr.tuning.space import suggest
    from cdr.tuning.study import ask

    _study(s)
    studies = [optuna.load_study(study_name=s.study_name, storage=open_storage(s.storage))
               for _ in range(askers)]
    params = []
    for i in range(n):
        trial = ask(studies[i % askers], s)
        suggest(s.space, trial, s.base)  # as a worker does, before running it
        params.append(trial.params)
    return params


def test_processes_sharing_a_study_propose_their_own_parameters(tmp_path: Path) -> None:
    """Two processes asking a shared study for trials while earlier ones run get different
    proposals (seeding by worker gave both processes' worker 0 the same ones), and trial
    n's proposal does not depend on which process asked for it."""
    two = _asked(settings(tmp_path / "two", 4), askers=2, n=4)
    assert len({p["trainer.lr"] for p in two}) == 4
    one = _asked(settings(tmp_path / "one", 4), askers=1, n=4)
    assert one == two


def test_consecutive_trials_of_a_small_space_do_not_repeat(tmp_path: Path) -> None:
    """Four trials of a 3 x 5 space are four different settings: trial seeds are hashed
    (seeds n and n + 1 drew the same lr and dropout for trials 0 and 1 of every study), and
    a repeated draw is drawn again."""
    space = (
        '[params."trainer.lr"]\ntype = "categorical"\nchoices = [1e-5, 1e-4, 1e-3]\n'
        '[params."heads.dropout"]\ntype = "categorical"\nchoices = [0.1, 0.2, 0.3, 0.4, 0.5]\n'
    )
    s = settings(tmp_path / "s", 4, space)
    proposals = _asked(s, askers=2, n=4)
    assert len({tuple(sorted(p.items())) for p in proposals}) == 4
    # repeated draws were told failed and are neither counted nor run
    study = optuna.load_study(study_name=s.study_name, storage=open_storage(s.storage))
    repeats = [t for t in study.get_trials() if "duplicate_of" in t.user_attrs]
    assert repeats and all(t.state == TrialState.FAIL for t in repeats)
    assert counts(study)[0] == 0
    rows = tuning.trial_rows(study, s.out)
    assert [r["state"] for r in rows].count("repeat") == len(repeats)
