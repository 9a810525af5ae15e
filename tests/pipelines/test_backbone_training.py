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
