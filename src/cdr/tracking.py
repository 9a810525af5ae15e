"""Experiment tracking: a run's config, per-epoch losses and validation values, final
metrics and files, logged to TensorBoard (``--tracking tensorboard``) or nowhere (``none``).

Tracking is a wrapper around a run, not part of it: ``run_tracked`` / ``resume_tracked``
call ``cdr.experiment.run_experiment`` / ``resume_experiment`` with the run's ``Reporter``
wrapped so that every per-epoch report of the training loop (``info`` with the mean
losses and, on evaluated epochs, ``val``) becomes a scalar ``<task>/<key>`` at step =
epoch (0-based, per training task); after the run (finished, failed or interrupted) the
final metrics (``metrics/<name>``, also as TensorBoard HParams with the config), the
protocol's masked edge sets and the run's files (``config.toml``, ``metrics.json``,
``protocol.json``, ``status.json``, as text) are logged. The run directory gets
``tracking.json`` saying where the events went.

With ``none`` (the default) nothing is wrapped and no tracking library is imported.
Events go to ``<run_dir>/tensorboard`` (so ``tensorboard --logdir runs`` shows every run),
or to ``<uri>/<run dir name>`` when a log root is given (``--tracking-uri``).

MLflow is not offered: its 3.x releases pin ``pyarrow<26`` (this project's dataset store
is on pyarrow 26) and pull about forty packages (Flask, SQLAlchemy, pandas, docker, ...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cdr.config import ExperimentConfig, config_to_dict, config_to_toml
from cdr.errors import ConfigError
from cdr.experiment import STATUS, RunRecord, resume_experiment, run_experiment
from cdr.pipelines.context import PROTOCOL
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CONFIG, METRICS, create_run_dir, write_json

#: the choices of ``--tracking``
TRACKERS = ("none", "tensorboard")
#: written into the run directory: which tracker logged the run, and where
TRACKING = "tracking.json"
#: the run files logged as text after the run
ARTIFACTS = (CONFIG, METRICS, PROTOCOL, STATUS)


def check_tracking(kind: str) -> str:
    if kind not in TRACKERS:
        raise ConfigError(
            f"--tracking: {kind!r} is not one of {', '.join(TRACKERS)}",
            hint="MLflow is not offered (see docs/tuning.md); use tensorboard",
        )
    return kind


def tag(task: str, key: str) -> str:
    """A scalar tag ``<task>/<key>`` (``stage 2: overlapping users`` ->
    ``stage_2_overlapping_users``)."""
    clean = re.sub(r"[^A-Za-z0-9_.@-]+", "_", task.strip().lower()).strip("_")
    return f"{clean or 'task'}/{key}"


class EpochSteps:
    """Turns Reporter calls into epochs: a call with ``total`` (re)starts a task at epoch
    ``advance`` (the epochs already done when a stage resumes); every call with ``info`` is
    the report of one epoch, whose 0-based number it returns (None for other calls)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def __call__(self, task: str, advance: int, total: int | None, info: Mapping[str, float]
                 ) -> int | None:
        if total is not None:
            self._next[task] = advance
            return None
        epoch = self._next.get(task, 0)
        self._next[task] = epoch + advance
        return epoch if info else None


class Tracker(Protocol):
    """Where a run's events go: scalars by tag and step, then the run's end."""

    def start(self, cfg: ExperimentConfig, registry: Registry, run_dir: Path) -> None: ...

    def scalar(self, name: str, value: float, step: int) -> None: ...

    def finish(self, run_dir: Path) -> None: ...


class TrackingReporter:
    """A Reporter that logs every per-epoch report to ``tracker`` and passes it on."""

    def __init__(self, tracker: Tracker, inner: Reporter | None = None) -> None:
        self.tracker = tracker
        self.inner = inner or null_reporter
        self.steps = EpochSteps()

    def __call__(self, task: str, advance: int = 1, total: int | None = None,
                 **info: float) -> None:
        epoch = self.steps(task, advance, total, info)
        if epoch is not None:
            for key, value in info.items():
                self.tracker.scalar(tag(task, key), float(value), epoch)
        self.inner(task, advance, total, **info)


def flat_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config as ``dotted.key -> scalar`` (lists as their TOML-ish text)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _numbers(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


class TensorBoardTracker:
    """Events of one run in one TensorBoard log directory (``torch.utils.tensorboard``)."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.params: dict[str, bool | int | float | str] = {}

    def start(self, cfg: ExperimentConfig, registry: Registry, run_dir: Path) -> None:
        self.params = flat_params(config_to_dict(cfg, registry))
        self.writer.add_text("config.toml", config_to_toml(cfg, registry), 0)
        self.writer.flush()

    def scalar(self, name: str, value: float, step: int) -> None:
        self.writer.add_scalar(name, value, step)

    def finish(self, run_dir: Path) -> None:
        from torch.utils.tensorboard.summary import hparams

        metrics = _numbers(run_dir / METRICS)
        for name, value in sorted(metrics.items()):
            self.writer.add_scalar(f"metrics/{name}", value, 0)
        params = dict(self.params)
        protocol = _protocol(run_dir)
        for key in ("protocol", "split_kind", "masked_at_validation", "masked_at_test"):
            if key in protocol:
                value = protocol[key]
                params[f"protocol.{key}"] = ",".join(value) if isinstance(value, list) else value
        params["status"] = str(_status(run_dir).get("state", "unknown"))
        exp, ssi, sei = hparams(params, {f"metrics/{k}": v for k, v in sorted(metrics.items())})
        file_writer = self.writer.file_writer
        assert file_writer is not None  # opened by SummaryWriter.__init__
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)
        for name in ARTIFACTS:
            text = _read(run_dir / name)
            if text is not None:
                self.writer.add_text(f"files/{name}", text, 0)
        self.writer.flush()
        self.writer.close()


def _protocol(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / PROTOCOL).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _status(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def open_tracker(kind: str, run_dir: Path, uri: str | None = None) -> Tracker:
    """The tracker ``kind`` names for the existing ``run_dir`` (``none``: nothing to open)."""
    check_tracking(kind)
    if kind == "tensorboard":
        log_dir = Path(uri) / run_dir.name if uri else run_dir / "tensorboard"
        write_json(run_dir / TRACKING, {"tracking": kind, "log_dir": str(log_dir)})
        return TensorBoardTracker(log_dir)
    raise ConfigError(f"--tracking {kind}: nothing to open")


class LazyTracker:
    """Opens the real tracker on first use: a run directory is created by the run itself
    (``run_experiment`` refuses an existing one), and exists once training reports."""

    def __init__(self, kind: str, uri: str | None, cfg: ExperimentConfig, registry: Registry,
                 run_dir: Path) -> None:
        self.kind, self.uri, self.cfg, self.registry = kind, uri, cfg, registry
        self.run_dir = run_dir
        self.tracker: Tracker | None = None

    def _open(self) -> Tracker:
        if self.tracker is None:
            self.tracker = open_tracker(self.kind, self.run_dir, self.uri)
            self.tracker.start(self.cfg, self.registry, self.run_dir)
        return self.tracker

    def start(self, cfg: ExperimentConfig, registry: Registry, run_dir: Path) -> None:
        if run_dir.is_dir():
            self._open()

    def scalar(self, name: str, value: float, step: int) -> None:
        self._open().scalar(name, value, step)

    def finish(self, run_dir: Path) -> None:
        if run_dir.is_dir():  # a run refused before it made its directory logs nothing
            self._open().finish(run_dir)


#: called once a tracked run ends, before its tracker closes: (run dir, the exception or None)
ExitHook = Callable[[Path, BaseException | None], None]


def _fresh_run_dir(cfg: ExperimentConfig) -> Path:
    """A run directory name that does not exist yet (``run_experiment`` creates it)."""
    path = create_run_dir(Path(cfg.output_dir), cfg.name)
    path.rmdir()
    return path


def _tracked(
    start: Callable[[Reporter], RunRecord],
    cfg: ExperimentConfig,
    registry: Registry,
    run_dir: Path,
    kind: str,
    uri: str | None,
    reporter: Reporter | None,
    on_exit: ExitHook | None,
) -> RunRecord:
    tracker: LazyTracker | None = None
    if check_tracking(kind) != "none":
        tracker = LazyTracker(kind, uri, cfg, registry, run_dir)
        tracker.start(cfg, registry, run_dir)  # a resumed run: open now
        reporter = TrackingReporter(tracker, reporter)
    try:
        record = start(reporter or null_reporter)
    except BaseException as exc:
        if on_exit is not None:
            on_exit(run_dir, exc)
        if tracker is not None:
            tracker.finish(run_dir)
        raise
    if on_exit is not None:
        on_exit(run_dir, None)
    if tracker is not None:
        tracker.finish(run_dir)
    return record


def run_tracked(
    cfg: ExperimentConfig,
    registry: Registry,
    *,
    tracking: str = "none",
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    run_dir: Path | None = None,
    on_exit: ExitHook | None = None,
) -> RunRecord:
    """``run_experiment`` with tracking (``none`` and no hook: exactly ``run_experiment``)."""
    if check_tracking(tracking) == "none" and on_exit is None:
        return run_experiment(cfg, registry, reporter=reporter, run_dir=run_dir)
    target = run_dir if run_dir is not None else _fresh_run_dir(cfg)
    return _tracked(
        lambda report: run_experiment(cfg, registry, reporter=report, run_dir=target),
        cfg, registry, target, tracking, tracking_uri, reporter, on_exit,
    )


def resume_tracked(
    run_dir: Path,
    registry: Registry,
    *,
    tracking: str = "none",
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    on_exit: ExitHook | None = None,
) -> RunRecord:
    """``resume_experiment`` with tracking (events appended to the run's log directory)."""
    if check_tracking(tracking) == "none" and on_exit is None:
        return resume_experiment(run_dir, registry, reporter=reporter)
    from cdr.config import structure_experiment
    from cdr.config.loading import read_toml

    cfg = structure_experiment(read_toml(run_dir / CONFIG), registry)
    return _tracked(
        lambda report: resume_experiment(run_dir, registry, reporter=report),
        cfg, registry, run_dir, tracking, tracking_uri, reporter, on_exit,
    )
