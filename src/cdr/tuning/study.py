"""``cdr tune``: an Optuna study whose trials are ordinary cdr run directories.

Layout of ``--out DIR``::

    study.db                  the study (SQLite; any Optuna RDB URL with --storage)
    trials/trial-0007/        trial 7's run directory (config.toml, status.json, metrics.json,
                              protocol.json, checkpoints/, ...); a pruned trial's status.json
                              says "pruned" and at which stage and epoch
    trials.csv                one row per trial: state, value, parameters, run directory
    best.toml                 the best trial's resolved config
    summary.json              metric, direction, best trial (its run directory relative to
                              DIR), its test metrics, the protocol's
                              masked edge sets, trial counts by state
    optimization_history.png, param_importances.png, intermediate_values.png

Trials run in ``--jobs`` worker processes on this machine against the same storage; each
asks the study for a trial under a file lock, so exactly ``--trials`` trials finish (on
this machine). The objective is a **validation** metric read from the trial run's
``metrics.json`` (a test metric is refused); the best trial's test metrics are read once,
at the end, from its run directory. Every trial runs with the config's seed (the same
split), so trials differ only in their parameters.

Pruning: the training loop reports ``val`` after every evaluated epoch; a
``PruningReporter`` passes it to the trial (step = the epoch, offset by 1000 for each
earlier validated stage of the run, so stage 2's epoch 3 of every trial shares one step)
and raises ``optuna.TrialPruned`` when the pruner says so (not before ``warmup`` epochs of
a stage).

Resuming: a killed study is continued by the same command. Trials left "running" by a
dead process are failed and re-enqueued with the same parameters (Optuna's
``RetryHeartbeatStaleTrialCallback``); the retry continues the killed trial's run directory from
its last checkpoint (``cdr run --resume``), so finished trials are never repeated and a
half-done one loses at most an epoch. With the default storage a tune process that finds
no other one alive on ``DIR`` (a file lock) does this at once; with ``--storage``
(possibly shared by other machines) it is done by heartbeats (a trial silent for
``GRACE_S`` seconds is stale).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import io
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import attrs
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from cdr.composition import plan
from cdr.config.loading import apply_overrides, structure_experiment
from cdr.data.store import build_dataset
from cdr.device import threads_per_worker
from cdr.errors import CdrError, ConfigError, RunError
from cdr.experiment import run_status
from cdr.locking import flock
from cdr.pipelines.context import PROTOCOL
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CONFIG, METRICS, atomic_write_bytes, atomic_write_text, read_json, write_json
from cdr.seeding import derive_seed
from cdr.studies.sweep import write_csv
from cdr.studies.tables import lower_is_better
from cdr.tracking import EpochSteps, resume_tracked, run_tracked
from cdr.tuning.space import Space, suggest

STUDY_DB = "study.db"
TRIALS = "trials"
#: global step = STEP_BLOCK * (index of the validated stage in the run) + epoch
STEP_BLOCK = 1000
HEARTBEAT_S = 10
GRACE_S = 60
MAX_RETRY = 3
PRUNERS = ("median", "none")
#: worker exit code: the study cannot go on (e.g. the metric is not in the runs' metrics)
FATAL = 3


def is_validation_metric(name: str) -> bool:
    """``val_rmse``, ``val_ndcg@20``, ``stage0_val_rmse``, ``target/val_x``: yes; ``rmse``,
    ``ndcg@20``, ``target/recall@20`` (test metrics): no."""
    return any(tok in ("val", "valid", "validation") for tok in re.split(r"[/_]", name))


def default_direction(metric: str) -> str:
    return "minimize" if lower_is_better(metric) else "maximize"


@attrs.frozen
class TuneSettings:
    """Everything a worker process needs (picklable)."""

    out: Path
    base: dict[str, Any]
    space: Space
    trials: int
    metric: str
    direction: str
    storage: str
    local_storage: bool
    study_name: str = "cdr-tune"
    pruner: str = "median"
    warmup: int = 2
    tracking: str = "none"
    tracking_uri: str | None = None
    seed: int = 0

    @property
    def target(self) -> int:
        """How many trials the study needs (a grid has no more points than its size)."""
        if self.space.sampler == "grid":
            return min(self.trials, self.space.grid_size())
        return self.trials

    def identity(self) -> dict[str, Any]:
        """What a study must keep across resumes (the number of trials may grow)."""
        return {
            "base": self.base,
            "space": self.space.source,
            "metric": self.metric,
            "direction": self.direction,
        }


@attrs.frozen
class TuneResult:
    out: Path
    best_number: int
    best_value: float
    best_params: dict[str, Any]
    best_run_dir: Path
    test_metrics: dict[str, float]
    counts: dict[str, int]
    files: list[Path]
    notes: list[str]


#: held while a process creates or opens the study's storage
OPEN_LOCK = ".open.lock"


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_DB).resolve()}"


def open_storage(url: str) -> RDBStorage:
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )


def make_sampler(settings: TuneSettings, seed: int) -> optuna.samplers.BaseSampler:
    if settings.space.sampler == "grid":
        return _Grid(settings.space.grid(), seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class _Grid(optuna.samplers.GridSampler):
    """Grid sampling in ask/tell workers: the workers stop at the grid's size themselves
    (``GridSampler.after_trial`` calls ``Study.stop``, which only works inside optimize)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def make_pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)


#: draws ``ask`` makes before it runs a repeat of an earlier trial's parameters
MAX_REDRAW = 20


# ---- the objective ------------------------------------------------------------------------


class PruningReporter:
    """Reports each evaluated epoch's ``val`` to the trial; raises ``TrialPruned`` when the
    pruner says so (from the stage's ``warmup``-th epoch on)."""

    def __init__(self, trial: Trial, warmup: int, inner: Reporter | None = None) -> None:
        self.trial, self.warmup, self.inner = trial, warmup, inner or null_reporter
        self.steps = EpochSteps()
        self.blocks: dict[str, int] = {}

    def __call__(self, task: str, advance: int = 1, total: int | None = None,
                 **info: float) -> None:
        self.inner(task, advance, total, **info)
        epoch = self.steps(task, advance, total, info)
        if epoch is None or "val" not in info:
            return
        block = self.blocks.setdefault(task, len(self.blocks))
        value = float(info["val"])
        self.trial.report(value, STEP_BLOCK * block + epoch)
        if epoch + 1 >= self.warmup and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned by the study at {task}, epoch {epoch + 1} "
                                     f"(validation {value:.6g})")


def _mark_pruned(run_dir: Path, exc: BaseException | None) -> None:
    """A pruned trial's run directory says so (not "failed")."""
    if isinstance(exc, optuna.TrialPruned) and run_dir.is_dir():
        status = run_status(run_dir)
        status.update(state="pruned", reason=str(exc), error="TrialPruned")
        write_json(run_dir / "status.json", status)


def read_metric(run_dir: Path, metric: str) -> float:
    """The objective from the run's ``metrics.json``; ConfigError when the run has no such
    metric (listing its validation metrics), nan when it is not finite."""
    metrics = read_json(run_dir / METRICS)
    if metric not in metrics:
        known = sorted(k for k in metrics if is_validation_metric(k))
        raise ConfigError(f"--metric {metric}: not in {run_dir / METRICS}; its validation "
                          f"metrics: {', '.join(known) or 'none'}")
    value = metrics[metric]
    return float(value) if isinstance(value, int | float) else math.nan


class _Heartbeat:
    """Records the trial's heartbeat while it runs (stale trials are failed and retried)."""

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self.stop = threading.Event()
        storage.record_heartbeat(trial_id)

        def beat() -> None:
            while not self.stop.wait(HEARTBEAT_S):
                with contextlib.suppress(Exception):  # a busy database: try again later
                    storage.record_heartbeat(trial_id)

        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def run_trial(settings: TuneSettings, study: optuna.Study, storage: RDBStorage, trial: Trial,
              registry: Registry) -> None:
    """Run one asked trial as a cdr run and tell the study how it ended."""
    heartbeat = _Heartbeat(storage, trial._trial_id)  # the id the storage knows it by
    try:
        value, state = _objective(settings, trial, registry)
    except KeyboardInterrupt:
        heartbeat.close()
        _fail_and_retry(study, storage, trial._trial_id)
        raise
    except ConfigError as exc:
        heartbeat.close()
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        raise
    heartbeat.close()
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    else:
        study.tell(trial, state=state)


def stored_dir(out: Path, run_dir: Path) -> str:
    """What a trial stores as its run directory: relative to the study directory, so a
    moved or copied study directory keeps finding its trials."""
    try:
        return str(run_dir.relative_to(out))
    except ValueError:
        return str(run_dir)


def trial_dir(out: Path, stored: str) -> Path:
    """A trial's run directory from what it stored: relative to ``out``; an absolute path
    (studies before relative paths) that no longer exists is looked up by name under
    ``out/trials`` (the study directory was moved)."""
    path = Path(stored)
    if not path.is_absolute():
        return out / path
    if path.exists():
        return path
    return out / TRIALS / path.name


def _objective(settings: TuneSettings, trial: Trial, registry: Registry
               ) -> tuple[float | None, TrialState]:
    overrides = suggest(settings.space, trial, settings.base)
    inherited = trial.user_attrs.get("run_dir")  # a retried trial continues its run
    run_dir = (trial_dir(settings.out, inherited) if inherited
               else settings.out / TRIALS / f"trial-{trial.number:04d}")
    trial.set_user_attr("run_dir", stored_dir(settings.out, run_dir))
    trial.set_user_attr("overrides", overrides)
    reporter = PruningReporter(trial, settings.warmup)
    try:
        if run_dir.is_dir() and run_status(run_dir):
            trial.set_user_attr("resumed", True)
            resume_tracked(run_dir, registry, reporter=reporter, on_exit=_mark_pruned,
                           tracking=settings.tracking, tracking_uri=settings.tracking_uri)
        else:
            if run_dir.is_dir():  # made but never started: nothing to keep
                for child in run_dir.iterdir():
                    child.unlink()
                run_dir.rmdir()
            cfg = structure_experiment(apply_overrides(settings.base, overrides), registry)
            run_tracked(cfg, registry, reporter=reporter, run_dir=run_dir, on_exit=_mark_pruned,
                        tracking=settings.tracking, tracking_uri=settings.tracking_uri)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("pruned", str(exc))
        return None, TrialState.PRUNED
    except ConfigError:
        raise
    except CdrError as exc:  # a diverging run, a refused combination: this trial fails
        trial.set_user_attr("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None, TrialState.FAIL
    value = read_metric(run_dir, settings.metric)
    if not math.isfinite(value):
        trial.set_user_attr("error", f"{settings.metric} is {value}")
        return None, TrialState.FAIL
    return value, TrialState.COMPLETE


def _fail_and_retry(study: optuna.Study, storage: RDBStorage, trial_id: int) -> None:
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(
                    study, storage.get_trial(trial_id)
                )


# ---- workers ------------------------------------------------------------------------------


def counts(study: optuna.Study) -> tuple[int, int, int]:
    """(finished, running, waiting) trials; a failed trial that is retried, or a repeated
    draw (``ask``), is not finished."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    finished = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.number not in retried
            and "duplicate_of" not in t.user_attrs)
        for t in trials
    )
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return finished, running, waiting


def _die_with_parent(parent: int) -> None:
    """A worker ends with the tune process, even when that is SIGKILLed."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    # heartbeats are recorded by run_trial's own thread, not by Study.optimize
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")


def work(settings: TuneSettings, index: int) -> None:
    """Ask, run, tell, until the study has its trials (one worker's loop)."""
    _quiet()
    storage = open_storage(settings.storage)
    registry = Registry()
    study = optuna.load_study(study_name=settings.study_name, storage=storage)
    # the grid sampler's seed: workers differ, and a resumed study does not replay its first
    # proposals (TPE is reseeded per trial by ``ask``)
    seed = settings.seed * 1000 + 101 * index + len(study.get_trials(deepcopy=False))
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              sampler=make_sampler(settings, seed), pruner=make_pruner(settings))
    while True:
        optuna.storages.fail_stale_trials(study)
        trial = None
        with flock(settings.out / ".ask.lock"):
            finished, running, _ = counts(study)
            if finished >= settings.target:
                return
            if finished + running < settings.target:
                trial = ask(study, settings)
        if trial is None:  # the last trials are running elsewhere
            time.sleep(1)
            continue
        run_trial(settings, study, storage, trial, registry)


def ask(study: optuna.Study, settings: TuneSettings) -> Trial:
    """The study's next trial, its parameters drawn (call it under the study's ask lock).

    The sampler is seeded by the trial's number (hashed): any worker of any process (two
    ``cdr tune`` or ``cdr reproduce`` commands sharing a study) that asks for trial n gets
    trial n's draw, every method's study the same sequence, and TPE's constant liar counts
    running trials. (Seeding per worker made two processes, both with worker 0, propose
    the same parameters.) A draw that repeats a finished or running trial's parameters is
    told failed with ``duplicate_of`` (not counted: ``counts``) and drawn again, up to
    ``MAX_REDRAW`` times: in a 15-point space, 4 random draws repeat one 35% of the time.
    A grid sampler keeps its own order (it skips the points of running trials itself)."""
    if settings.space.sampler == "grid":
        return study.ask()
    for _ in range(MAX_REDRAW):
        number = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(settings, derive_seed(settings.seed, "trial", number) % 2**32)
        trial = study.ask()
        suggest(settings.space, trial, settings.base)
        taken = [t for t in study.get_trials(deepcopy=False)
                 if t.number != trial.number and "duplicate_of" not in t.user_attrs
                 and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
        twin = next((t for t in taken if t.params == trial.params), None)
        if twin is None:
            return trial
        trial.set_user_attr("duplicate_of", twin.number)
        study.tell(trial, state=TrialState.FAIL)
    return trial  # a space this small is exhausted: run the repeat


def worker_main(settings: TuneSettings, index: int, parent: int, threads: int) -> None:
    """One worker process (ends with the tune process, even a SIGKILLed one)."""
    _die_with_parent(parent)
    _quiet()
    import torch

    torch.set_num_threads(threads)
    try:
        work(settings, index)
    except ConfigError:
        sys.exit(FATAL)
    except KeyboardInterrupt:
        sys.exit(130)


# ---- the study ------------------------------------------------------------------------------


def open_study(settings: TuneSettings, storage: RDBStorage) -> optuna.Study:
    """Create the study or load it; ConfigError if it was made for another experiment."""
    study = optuna.create_study(storage=storage, study_name=settings.study_name,
                                direction=settings.direction, load_if_exists=True)  # type: ignore[arg-type]
    identity = json.loads(json.dumps(settings.identity(), default=str))
    stored = study.user_attrs.get("cdr")
    if stored is None:
        study.set_user_attr("cdr", identity)
    elif stored != identity:
        changed = sorted(k for k in identity if stored.get(k) != identity[k])
        raise ConfigError(
            f"{settings.storage}: study {settings.study_name!r} was made with another "
            f"{', '.join(changed)}; a resumed study must keep them",
            hint="use another --out (or --study-name) for a new study",
        )
    return study


def recover(study: optuna.Study, storage: RDBStorage) -> list[int]:
    """Fail and re-enqueue every running trial (called when no tune process is alive)."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for trial in stale:
        _fail_and_retry(study, storage, trial._trial_id)
    return [t.number for t in stale]


def run_study(settings: TuneSettings, jobs: int, reporter: Reporter | None = None
              ) -> TuneResult:
    """Run (or continue) the study with ``jobs`` worker processes; write its outputs."""
    _quiet()
    report = reporter or null_reporter
    settings.out.mkdir(parents=True, exist_ok=True)
    # one process at a time creates the storage: two creating one SQLite file at once race
    # in optuna's schema setup (IntegrityError on alembic_version; seen with two
    # `cdr reproduce` processes reaching a new study together)
    with flock(settings.out / OPEN_LOCK):
        storage = open_storage(settings.storage)
        study = open_study(settings, storage)
    notes: list[str] = []
    alive = settings.out / ".tune.lock"
    with flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB) as sole:
        if sole and settings.local_storage:
            stale = recover(study, storage)
            if stale:
                notes.append(f"trials {', '.join(map(str, stale))} were left running by a "
                             "killed process; they are retried from their run directories")
    # build the base dataset once, here: workers building it at the same time race in the
    # dataset cache (one of them gets "already exists")
    cfg = structure_experiment(settings.base, Registry())
    build_dataset(cfg.dataset, Registry(), reporter=report)
    with flock(alive, fcntl.LOCK_SH):
        _run_workers(settings, jobs, study, report)
    return write_outputs(study, settings, notes)


def _run_workers(settings: TuneSettings, jobs: int, study: optuna.Study,
                 report: Reporter) -> None:
    context = multiprocessing.get_context("spawn")
    threads = threads_per_worker(jobs)
    workers = [context.Process(target=worker_main, args=(settings, i, os.getpid(), threads),
                               daemon=True) for i in range(jobs)]
    for worker in workers:
        worker.start()
    done = counts(study)[0]
    report("trials", advance=min(done, settings.target), total=settings.target)
    try:
        while any(w.is_alive() for w in workers):
            time.sleep(1)
            now = counts(study)[0]
            if now > done:
                report("trials", min(now, settings.target) - min(done, settings.target),
                       None, **_best(study))
                done = now
            failed = [w for w in workers if w.exitcode not in (None, 0)]
            if failed:
                for worker in workers:
                    if worker.is_alive():
                        worker.terminate()
                for worker in workers:
                    worker.join()
                raise _worker_error(study, failed[0].exitcode)
    except KeyboardInterrupt:
        for worker in workers:
            worker.join(timeout=30)
        raise


def _best(study: optuna.Study) -> dict[str, float]:
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return {"best": float(study.best_value)} if complete else {}


def _worker_error(study: optuna.Study, code: int | None) -> CdrError:
    errors = [t.user_attrs["error"] for t in study.get_trials(deepcopy=False)
              if "error" in t.user_attrs]
    if code == FATAL and errors:
        return ConfigError(errors[-1])
    return RunError(f"a tune worker exited with code {code}"
                    + (f" (last trial error: {errors[-1]})" if errors else ""))


# ---- outputs --------------------------------------------------------------------------------


def trial_rows(study: optuna.Study, out: Path) -> list[dict[str, Any]]:
    trials = study.get_trials(deepcopy=False)
    retried_as = {n: t.number for t in trials for n in t.system_attrs.get("retry_history", [])}
    rows = []
    for t in trials:
        state = t.state.name.lower()
        note = t.user_attrs.get("pruned") or t.user_attrs.get("error", "")
        if t.state == TrialState.FAIL and t.number in retried_as:
            state = "retried"
            note = (f"left running by a killed process; retried as trial {retried_as[t.number]}"
                    " (same parameters and run directory)")
        if "duplicate_of" in t.user_attrs:
            state = "repeat"
            note = f"drew trial {t.user_attrs['duplicate_of']}'s parameters again; not run"
        row: dict[str, Any] = {
            "number": t.number,
            "state": state,
            "value": t.value if t.value is not None else "",
        }
        row.update({f"param:{k}": v for k, v in t.params.items()})
        row["seconds"] = (round(t.duration.total_seconds(), 3)
                          if t.duration is not None else "")
        row["last_step"] = t.last_step if t.last_step is not None else ""
        row["retry_of"] = t.system_attrs.get("failed_trial", "")
        stored = t.user_attrs.get("run_dir")
        row["run_dir"] = stored_dir(out, trial_dir(out, stored)) if stored else ""
        row["note"] = note
        rows.append(row)
    return rows


def _save_figure(ax: Any, path: Path) -> None:
    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    figure.set_size_inches(7, 4.5)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def plots(study: optuna.Study, out: Path) -> tuple[list[Path], list[str]]:
    """Optimisation history, parameter importances, intermediate values (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as views

    written, notes = [], []
    for name, draw in (
        ("optimization_history", views.plot_optimization_history),
        ("param_importances", views.plot_param_importances),
        ("intermediate_values", views.plot_intermediate_values),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw(study)
            path = out / f"{name}.png"
            _save_figure(ax, path)
            written.append(path)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            notes.append(f"{name}.png not drawn: {exc}")
    return written, notes


def write_outputs(study: optuna.Study, settings: TuneSettings,
                  notes: list[str] | None = None) -> TuneResult:
    out = settings.out
    notes = list(notes or [])
    rows = trial_rows(study, out)
    write_csv(out / "trials.csv", rows)
    files = [out / "trials.csv"]
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        errors = sorted({str(r["note"]) for r in rows if r["note"]})
        raise RunError(f"study {settings.study_name!r}: no trial completed"
                       + (f" ({errors[0]})" if errors else ""))
    best: FrozenTrial = study.best_trial
    best_dir = trial_dir(out, best.user_attrs["run_dir"])
    verb = "minimize" if settings.direction == "minimize" else "maximize"
    header = (f"# best trial {best.number} of study {settings.study_name!r}: "
              f"{settings.metric} = {best.value:.6g} ({verb})\n")
    atomic_write_text(out / "best.toml", header + (best_dir / CONFIG).read_text())
    files.append(out / "best.toml")
    metrics = read_json(best_dir / METRICS)
    test = {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
            and not is_validation_metric(k)}
    protocol = read_json(best_dir / PROTOCOL) if (best_dir / PROTOCOL).exists() else {}
    pictures, plot_notes = plots(study, out)
    files += pictures
    notes += plot_notes
    assert best.value is not None
    summary = {
        "study": settings.study_name,
        "storage": STUDY_DB if settings.local_storage else settings.storage,
        "metric": settings.metric,
        "direction": settings.direction,
        "sampler": settings.space.sampler,
        "trials": states,
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run_dir": stored_dir(out, best_dir),  # relative to the study directory
            "test_metrics": test,
        },
        "protocol": {k: protocol[k] for k in ("protocol", "split_kind", "masked_at_validation",
                                              "masked_at_test") if k in protocol},
        "notes": notes,
    }
    write_json(out / "summary.json", summary)
    files.append(out / "summary.json")
    return TuneResult(out, best.number, float(best.value), dict(best.params), best_dir, test,
                      states, files, notes)


def default_metric(cfg: Any, registry: Registry) -> str:
    """RMSE of the validation users for the MuSiC protocol, else validation NDCG@k."""
    protocol = plan(cfg, registry)
    return "val_rmse" if protocol.name == "cold-start" else f"val_ndcg@{cfg.evaluation.k}"


def check_metric(metric: str) -> str:
    if not is_validation_metric(metric):
        raise ConfigError(
            f"--metric {metric}: not a validation metric; a study selects on validation, "
            "never on a test metric",
            hint="e.g. --metric val_rmse or --metric val_ndcg@20 (the best trial's test "
            "metrics are reported at the end)",
        )
    return metric
