"""The single-domain protocol: target domain alone, per-user split, train and validation
masked at test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdr.config import load_experiment
from cdr.experiment import run_experiment
from cdr.pipelines import single_domain
from cdr.registry import Registry

OVERRIDES = ["dataset.size=tiny", "split.kind=single-domain", "trainer.epochs=3"]
COMPONENTS = {"generator": "none", "backbone": "lightgcn", "aligner": "none"}


def test_split_cuts_every_target_edge_once_per_user_ratio(tmp_path: Path) -> None:
    registry = Registry()
    cfg = load_experiment(None, registry, OVERRIDES, COMPONENTS)
    from cdr.data.store import load_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        dataset = load_dataset(cfg.dataset, registry)
    split = single_domain.single_domain_split(dataset, cfg.split)
    parts = [split.train, split.val, split.test]
    assert split.new.user.numel() == 0 and split.unseen_users.numel() == 0
    edges = {(u, i) for p in parts for u, i in zip(p.user.tolist(), p.item.tolist(), strict=True)}
    target = dataset.target.interactions
    assert sum(len(p) for p in parts) == len(target) == len(edges)
    # ~80/10/10 per user
    assert 0.75 < len(split.train) / len(target) < 0.85


def test_test_ranking_masks_train_and_validation_and_protocol_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    captured: dict[str, Any] = {}
    original = single_domain.evaluate_ranking

    def spy(score_fn: Any, users: Any, num_items: int, relevant: Any, exclude: Any, **kw: Any):
        if not captured:  # the model's test ranking (the popularity reference comes after)
            captured.update(relevant=relevant, exclude=exclude)
        return original(score_fn, users, num_items, relevant, exclude, **kw)

    monkeypatch.setattr(single_domain, "evaluate_ranking", spy)
    registry = Registry()
    cfg = load_experiment(None, registry, OVERRIDES, COMPONENTS)
    record = run_experiment(cfg, registry, run_dir=tmp_path / "run")
    assert record.pipeline == "single-domain"
    assert 0.0 <= record.metrics["target/ndcg@20"] <= 1.0
    written = json.loads((tmp_path / "run" / "protocol.json").read_text())
    assert written["masked_at_test"] == ["train", "validation"]
    from cdr.data.store import load_dataset

    split = single_domain.single_domain_split(load_dataset(cfg.dataset, registry), cfg.split)

    def pairs(inter: Any) -> set[tuple[int, int]]:
        return set(zip(inter.user.tolist(), inter.item.tolist(), strict=True))

    # exactly the train and validation edges are masked; the relevant ones are the test edges
    assert pairs(captured["exclude"]) == pairs(split.train) | pairs(split.val)
    assert pairs(captured["relevant"]) == pairs(split.test)
