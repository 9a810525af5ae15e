"""The inductive pipeline end to end on the tiny synthetic preset (id features stand in for
text/image so no model weights are loaded)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cdr.config.loading import load_experiment
from cdr.pipelines.context import run_protocol
from cdr.pipelines.inductive import protocol
from cdr.registry import Registry
from cdr.runs import read_json

BASE = [
    "dataset.size=tiny",
    "split.kind=inductive",
    "split.unseen_item_fraction=0.2",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.dim=8",
    "evaluation.ks=[20]",
    "device=cpu",
]
MM_ID = ["backbone.text_encoder=id", "backbone.image_encoder=id", "backbone.k=2"]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.chdir(tmp_path)  # dataset and feature caches go under tmp_path/.cache
    return Registry()


def run(registry: Registry, run_dir: Path, backbone: str, aligner: str, extra: list[str]) -> dict:
    components = {"backbone": backbone, "aligner": aligner, "generator": "none"}
    cfg = load_experiment(None, registry, [*BASE, *extra], components)
    run_dir.mkdir()
    return run_protocol(protocol, cfg, registry, run_dir)


def test_micrec_runs_end_to_end_with_all_slices(registry: Registry, tmp_path: Path) -> None:
    run_dir = tmp_path / "micrec"
    metrics = run(registry, run_dir, "inmo", "infonce", MM_ID)
    for domain in ("source", "target"):
        for name in ("ndcg@20", "precision@20", "recall@20"):
            assert 0.0 <= metrics[f"{domain}/{name}"] <= 1.0
        for users in ("all", "seen", "unseen"):
            for items in ("all", "seen", "unseen"):
                assert f"{domain}/{users}-users/{items}-items/ndcg@20" in metrics
    written = read_json(run_dir / "metrics.json")
    assert written["target/ndcg@20"] == pytest.approx(metrics["target/ndcg@20"])
    # a finished stage keeps its selected state; its resumable "last" file is gone
    assert (run_dir / "checkpoints" / "backbones.done.safetensors").exists()
    assert not (run_dir / "checkpoints" / "backbones.last.safetensors").exists()
    assert (run_dir / "serving" / "tensors.safetensors").exists()
    assert math.isfinite(metrics["val_ndcg@20"])
    # same seed -> same numbers
    again = run(registry, tmp_path / "again", "inmo", "infonce", MM_ID)
    assert again["target/ndcg@20"] == pytest.approx(metrics["target/ndcg@20"])


def test_resume_continues_from_the_last_checkpoint(registry: Registry, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    run(registry, run_dir, "inmo", "none", ["backbone.multimodal=false"])
    cfg = load_experiment(
        None,
        registry,
        [*BASE, "backbone.multimodal=false", "trainer.epochs=3"],
        {"backbone": "inmo", "aligner": "none", "generator": "none"},
    )
    metrics = run_protocol(protocol, cfg, registry, run_dir)  # picks up epoch 2 of 3
    assert metrics["best_epoch"] <= 2


@pytest.mark.parametrize("backbone", ["lightgcn", "mf"])
def test_transductive_baselines_run(registry: Registry, tmp_path: Path, backbone: str) -> None:
    metrics = run(registry, tmp_path / backbone, backbone, "none", [])
    assert 0.0 <= metrics["target/unseen-users/all-items/ndcg@20"] <= 1.0
