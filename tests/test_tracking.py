"""Tracking: a run's config, per-epoch losses / validation values (step = epoch), final
metrics and files, read back through TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdr.config import load_experiment
from cdr.registry import Registry
from cdr.tracking import EpochSteps, TrackingReporter, resume_tracked, run_tracked, tag

OVERRIDES = ["dataset.size=tiny", "split.kind=single-domain", "trainer.epochs=3"]
COMPONENTS = {"generator": "none", "backbone": "lightgcn", "aligner": "none"}


def _accumulator(log_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _text(acc: Any, name: str) -> str:
    (event,) = acc.Tensors(f"{name}/text_summary")
    return bytes(event.tensor_proto.string_val[0]).decode()


def test_epoch_steps_follow_the_loop_reports() -> None:
    steps = EpochSteps()
    assert steps("train epoch", 0, 5, {}) is None  # the stage starts
    assert [steps("train epoch", 1, None, {"loss": 1.0}) for _ in range(3)] == [0, 1, 2]
    assert steps("train epoch", 2, 5, {}) is None  # resumed after two epochs
    assert steps("train epoch", 1, None, {"loss": 1.0}) == 2
    assert steps("encode items", 10, None, {}) is None  # not an epoch report


def test_tracked_run_is_read_back_from_tensorboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    cfg = load_experiment(None, registry, OVERRIDES, COMPONENTS)
    seen: list[tuple[str, dict[str, float]]] = []

    def inner(task: str, advance: int = 1, total: int | None = None, **info: float) -> None:
        if info:
            seen.append((task, info))

    run_dir = tmp_path / "run"
    record = run_tracked(cfg, registry, tracking="tensorboard", reporter=inner, run_dir=run_dir)
    assert json.loads((run_dir / "tracking.json").read_text())["tracking"] == "tensorboard"
    acc = _accumulator(run_dir / "tensorboard")
    tags = acc.Tags()["scalars"]
    # per-epoch validation values and losses, step = epoch, exactly what the loop reported
    epochs = [info for task, info in seen if task == "train epoch"]
    assert len(epochs) == 3
    val = acc.Scalars(tag("train epoch", "val"))
    assert [e.step for e in val] == [0, 1, 2]
    assert [e.value for e in val] == pytest.approx([info["val"] for info in epochs])
    loss = acc.Scalars(tag("train epoch", "loss"))
    assert [e.value for e in loss] == pytest.approx([info["loss"] for info in epochs])
    # final metrics = metrics.json
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["target/ndcg@20"] == pytest.approx(record.metrics["target/ndcg@20"])
    for name in ("target/ndcg@20", "target/recall@20", "val_ndcg@20"):
        (event,) = acc.Scalars(f"metrics/{name}")
        assert event.value == pytest.approx(metrics[name], rel=1e-6)
    assert len([t for t in tags if t.startswith("metrics/")]) == sum(
        isinstance(v, int | float) for v in metrics.values()
    )
    # the config (params) and the run's files
    assert _text(acc, "config.toml") == (run_dir / "config.toml").read_text()
    assert json.loads(_text(acc, "files/protocol.json"))["masked_at_test"] == [
        "train",
        "validation",
    ]
    assert json.loads(_text(acc, "files/status.json"))["state"] == "done"
    hparams = acc.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(hparams).session_start_info
    assert start.hparams["backbone.kind"].string_value == "lightgcn"
    assert start.hparams["trainer.epochs"].number_value == 3
    assert start.hparams["protocol.masked_at_test"].string_value == "train,validation"
    assert start.hparams["status"].string_value == "done"


def test_a_failed_run_is_tracked_with_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    cfg = load_experiment(None, registry, OVERRIDES, COMPONENTS)

    def interrupt(task: str, advance: int = 1, total: int | None = None, **info: float) -> None:
        if "val" in info:
            raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_tracked(cfg, registry, tracking="tensorboard", reporter=interrupt, run_dir=run_dir)
    acc = _accumulator(run_dir / "tensorboard")
    assert [e.step for e in acc.Scalars(tag("train epoch", "val"))] == [0]
    assert json.loads(_text(acc, "files/status.json"))["state"] == "interrupted"
    # resumed: the later epochs land in the same log directory
    resume_tracked(run_dir, registry, tracking="tensorboard")
    acc = _accumulator(run_dir / "tensorboard")
    assert [e.step for e in acc.Scalars(tag("train epoch", "val"))] == [0, 1, 2]


def test_tracking_none_imports_no_tracking_library(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cdr.cli.app import app\n"
        "from cdr.tracking import TrackingReporter, run_tracked\n"
        "bad = [m for m in sys.modules if m.startswith(('tensorboard', 'torch.utils.tensorboard',"
        " 'optuna', 'mlflow'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_tracking_reporter_passes_every_call_on() -> None:
    calls: list[tuple[Any, ...]] = []

    class Sink:
        def start(self, *a: Any) -> None: ...

        def scalar(self, name: str, value: float, step: int) -> None:
            calls.append(("scalar", name, value, step))

        def finish(self, run_dir: Path) -> None: ...

    def inner(task: str, advance: int = 1, total: int | None = None, **info: float) -> None:
        calls.append(("inner", task, advance, total, info))

    report = TrackingReporter(Sink(), inner)
    report("stage 2: overlapping users", 0, 4)
    report("stage 2: overlapping users", 1, None, loss=0.5, val=1.25)
    assert calls == [
        ("inner", "stage 2: overlapping users", 0, 4, {}),
        ("scalar", "stage_2_overlapping_users/loss", 0.5, 0),
        ("scalar", "stage_2_overlapping_users/val", 1.25, 0),
        ("inner", "stage 2: overlapping users", 1, None, {"loss": 0.5, "val": 1.25}),
    ]
