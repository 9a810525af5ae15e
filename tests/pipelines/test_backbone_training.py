"""The backbones' per-epoch hook reaches them while they train: INMO's alpha takes the
scheduled value of every epoch (checked where the forward pass reads it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdr.backbones.inmo import INMOBackbone, alpha_at
from cdr.config import load_experiment
from cdr.experiment import run_experiment
from cdr.registry import Registry


def test_inmo_alpha_follows_its_schedule_during_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    seen: list[float] = []
    original = INMOBackbone.represent

    def record(self: INMOBackbone, graph: object) -> object:
        if self.training:
            seen.append(round(float(self.alpha), 6))
        return original(self, graph)  # type: ignore[arg-type]

    monkeypatch.setattr(INMOBackbone, "represent", record)
    registry = Registry()
    overrides = [
        "dataset.size=tiny",
        "trainer.epochs=4",
        "trainer.patience=10",
        "backbone.multimodal=false",
        "backbone.alpha_start=0.2",
        "backbone.alpha_end=1.0",
        "backbone.alpha_epochs=4",
    ]
    components = {"generator": "none", "backbone": "inmo", "aligner": "none"}
    cfg = load_experiment(None, registry, overrides, components)
    run_experiment(cfg, registry, run_dir=tmp_path / "run")
    expected = {round(alpha_at(cfg.backbone, epoch), 6) for epoch in range(4)}  # type: ignore[arg-type]
    assert len(expected) == 4  # a schedule that moves every epoch
    assert set(seen) == expected


def test_an_epoch_is_one_pass_or_the_configured_number_of_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    from cdr.pipelines import backbone_training

    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    original = backbone_training.training_loss

    def count(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(backbone_training, "training_loss", count)
    registry = Registry()
    components = {"generator": "none", "backbone": "lightgcn", "aligner": "none"}
    base = ["dataset.size=tiny", "trainer.epochs=2", "trainer.patience=10", "trainer.batch_size=64"]
    cfg = load_experiment(None, registry, [*base, "trainer.steps_per_epoch=3"], components)
    run_experiment(cfg, registry, run_dir=tmp_path / "fixed")
    assert len(calls) == 2 * 3
    calls.clear()
    cfg = load_experiment(None, registry, base, components)
    run_experiment(cfg, registry, run_dir=tmp_path / "pass")
    from cdr.data.splits import inductive_split
    from cdr.data.store import load_dataset

    split = inductive_split(load_dataset(cfg.dataset, registry), cfg.split)
    one_pass = math.ceil(max(len(split.source.train), len(split.target.train)) / 64)
    assert len(calls) == 2 * one_pass
