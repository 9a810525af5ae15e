"""The composed pipeline (generator + graph backbone) end to end on the tiny synthetic preset:
metrics, export -> recommend round trip, and resume after a hard kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cdr.config import load_experiment
from cdr.experiment import resume_experiment, run_experiment, run_status
from cdr.registry import Registry
from cdr.scorers.calibrated import CalibratedScorer, calibrate
from cdr.scorers.dot import DotScorer
from cdr.serving.bundle import Recommender, export_bundle
from cdr.training.checkpoint import load_checkpoint

BASE = [
    "dataset.size=tiny",
    "generator.kind=ddpm",
    "backbone.kind=inmo",
    "backbone.multimodal=false",
    "aligner.kind=infonce",
    "trainer.epochs=3",
    "trainer.batch_size=64",
    "generator.widths=[32, 16]",
    "evaluation.ks=[5]",
]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One dataset cache (./.cache) shared by the module's runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cache"))
        yield None


def test_ddpm_on_inmo_trains_and_evaluates_cold_users(tmp_path: Path) -> None:
    registry = Registry()
    cfg = load_experiment(None, registry, [*BASE, "split.unseen_item_fraction=0.2"])
    record = run_experiment(cfg, registry, run_dir=tmp_path / "run")
    m = record.metrics
    for key in ("mae", "rmse", "ndcg@20", "dual_rmse", "dual_ndcg@20", "val_ndcg@20"):
        assert math.isfinite(m[key]), key
    assert 0 <= m["ndcg@20"] <= 1
    assert run_status(tmp_path / "run")["pipeline"] == "composed-cold-start"


def test_export_then_recommend_known_and_cold_users(tmp_path: Path) -> None:
    registry = Registry()
    cfg = load_experiment(None, registry, BASE)
    run = run_experiment(cfg, registry, run_dir=tmp_path / "run").run_dir
    model = Recommender.load(export_bundle(run, tmp_path / "m.cdr", registry), registry)
    user = model.user_ids[0]
    [rec] = model.recommend_known([user], k=5, exclude_seen=True)
    assert len(rec.items) == 5 and len(set(rec.items)) == 5
    seen = model.seen_items[model.seen_offsets[0] : model.seen_offsets[1]].tolist()
    assert not {model.target_item_ids[i] for i in seen} & set(rec.items)
    source_ids = list(model.source_item_index)
    cold = model.recommend_cold("newcomer", [(source_ids[0], 5.0), (source_ids[3], 4.0)], k=3)
    assert cold.cold_start and len(cold.items) == 3
    assert set(cold.items) <= set(model.target_item_ids)


def test_resume_after_kill_continues_from_the_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    args = [*BASE, "trainer.epochs=120", "trainer.patience=120", "trainer.batch_size=16"]
    command = [
        sys.executable,
        "-c",
        "from cdr.cli.app import main; main()",
        "compose",
        "--out",
        str(run_dir),
        *[x for a in args for x in ("--set", a)],
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "backbones.last.safetensors"
    deadline = time.monotonic() + 120
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never reached its first checkpoint"
    assert run_status(run_dir)["state"] == "running"  # killed mid-run
    killed_at = load_checkpoint(last)["epoch"]

    starts: list[int] = []

    def reporter(task: str, advance: int = 1, total: int | None = None, **info: float) -> None:
        if task == "backbones" and total is not None:
            starts.append(advance)

    record = resume_experiment(run_dir, Registry(), reporter=reporter)
    assert starts and starts[0] >= killed_at + 1 > 0  # picked up after the saved epoch
    assert run_status(run_dir)["state"] == "done"
    assert math.isfinite(record.metrics["ndcg@20"])
    assert json.loads((run_dir / "metrics.json").read_text())["ndcg@20"] == pytest.approx(
        record.metrics["ndcg@20"]
    )


def test_calibration_recovers_an_affine_rating_map() -> None:
    from cdr.data.records import Interactions

    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(20, 4, generator=gen), torch.randn(30, 4, generator=gen)
    u, i = torch.randint(0, 20, (200,), generator=gen), torch.randint(0, 30, (200,), generator=gen)
    rating = 0.7 * (users[u] * items[i]).sum(-1) + 3.0
    ratings = Interactions(u, i, rating, torch.zeros(200, dtype=torch.long))
    a, b = calibrate(DotScorer(), users, items, ratings)
    assert a == pytest.approx(0.7, abs=1e-5) and b == pytest.approx(3.0, abs=1e-5)
    scorer = CalibratedScorer(DotScorer(), a, b)
    assert torch.allclose(scorer.score(users, items), 0.7 * users @ items.T + 3.0, atol=1e-4)
    assert torch.allclose(scorer.rate(users[u], items[i]), rating, atol=1e-4)


def test_ddpm_on_inmo_on_the_inductive_protocol(tmp_path: Path) -> None:
    registry = Registry()
    cfg = load_experiment(
        None, registry, [*BASE, "split.kind=inductive", "split.unseen_item_fraction=0.2"]
    )
    m = run_experiment(cfg, registry, run_dir=tmp_path / "run").metrics
    assert m["generated_users"] > 0
    for prefix in ("target", "generated/target"):
        for cut in ("all-users/all-items", "unseen-users/all-items", "all-users/unseen-items"):
            assert math.isfinite(m[f"{prefix}/{cut}/ndcg@5"]), (prefix, cut)
    # seen users keep their backbone vectors: identical metrics on the seen-users slice
    seen = "seen-users/all-items/ndcg@5"
    assert m[f"generated/target/{seen}"] == pytest.approx(m[f"target/{seen}"])
