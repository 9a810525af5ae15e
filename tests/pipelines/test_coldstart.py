"""The cold-start pipeline end to end on the tiny synthetic preset."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cdr.config import load_experiment
from cdr.data.records import Interactions
from cdr.pipelines.generation import history_table, rating_loss
from cdr.registry import Registry
from cdr.scorers.dot import DotScorer

BASE = ["dataset.size=tiny", "trainer.epochs=2", "trainer.batch_size=16", "evaluation.ks=[5]"]


def _run(tmp_path: Path, name: str, *overrides: str) -> dict[str, float]:
    from cdr.pipelines.coldstart import protocol
    from cdr.pipelines.context import run_protocol

    registry = Registry()
    cfg = load_experiment(None, registry, [*BASE, *overrides])
    run_dir = tmp_path / name
    run_dir.mkdir()
    return run_protocol(protocol, cfg, registry, run_dir)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One dataset/feature cache (./.cache) shared by the module's runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cache"))
        yield None


@pytest.mark.parametrize(
    "generator", ["ddpm", "ptupcdr", "cmf", "identity", "tgt", "mapping", "diffcdr"]
)
def test_every_generator_runs_and_reports_finite_metrics(tmp_path: Path, generator: str) -> None:
    metrics = _run(tmp_path, generator, f"generator.kind={generator}")
    for key in ("mae", "rmse", "ndcg@5", "ndcg@20", "rated_ndcg@20", "val_rmse"):
        assert math.isfinite(metrics[key]), key
    assert 0 <= metrics["ndcg@20"] <= 1
    assert (tmp_path / generator / "metrics.json").exists()


def test_seeded_runs_repeat_and_dual_cold_start_is_reported(tmp_path: Path) -> None:
    extra = ("split.unseen_item_fraction=0.2", "generator.widths=[32, 16]")
    a = _run(tmp_path, "a", *extra)
    b = _run(tmp_path, "b", *extra)
    assert a == b
    assert math.isfinite(a["dual_rmse"]) and "dual_ndcg@20" in a
    # the references on the held-out items too: none has a training rating, so the item
    # mean is the global mean there, and popularity ranks them all equal
    assert math.isfinite(a["ref/global_mean/dual_mae"])
    assert a["ref/item_mean/dual_mae"] == pytest.approx(a["ref/global_mean/dual_mae"])
    assert a["ref/item_mean/mae"] != pytest.approx(a["ref/global_mean/mae"])
    assert "ref/popularity/dual_rated_ndcg@20" in a and "ref/popularity/dual_mae" not in a
    assert a["terminal_snr"] == pytest.approx(9.39, abs=0.01)
    assert (tmp_path / "a" / "checkpoints" / "stage2.done.safetensors").exists()


def test_history_keeps_most_recent_items_per_user() -> None:
    inter = Interactions(
        torch.tensor([0, 0, 0, 2]),
        torch.tensor([5, 6, 7, 1]),
        torch.ones(4),
        torch.tensor([1, 3, 2, 0]),
    )
    table, mask = history_table(inter, 3, torch.device("cpu"))
    assert table[0].tolist() == [6, 7, 5]  # newest first
    assert mask[1].tolist() == [False, False, False]
    assert table[2, 0] == 1


def test_rating_loss_uses_only_the_batch_users() -> None:
    ratings = Interactions(
        torch.tensor([1, 1, 3]),
        torch.tensor([0, 1, 0]),
        torch.tensor([2.0, 4.0, 9.0]),
        torch.zeros(3, dtype=torch.long),
    )
    items = torch.eye(2)
    vectors = torch.tensor([[2.0, 4.0]])  # user 1 predicts both ratings exactly
    loss = rating_loss(DotScorer(), vectors, torch.tensor([1]), ratings, items)
    assert float(loss) == 0.0


def test_music_run_exports_a_servable_bundle(tmp_path: Path) -> None:
    from cdr.experiment import run_experiment
    from cdr.serving.bundle import Recommender, export_bundle

    registry = Registry()
    run_experiment(load_experiment(None, registry, BASE), registry, run_dir=tmp_path / "served")
    model = Recommender.load(
        export_bundle(tmp_path / "served", tmp_path / "m.cdr", registry), registry
    )
    [known] = model.recommend_known([model.user_ids[1]], k=4)
    assert len(known.items) == 4
    first = next(iter(model.source_item_index))
    cold = model.recommend_cold("newcomer", [(first, 4.0)], k=4, seed=1)
    assert cold == model.recommend_cold("newcomer", [(first, 4.0)], k=4, seed=1)  # seeded


def test_each_stage_has_its_own_budget(tmp_path: Path) -> None:
    from cdr.experiment import run_experiment

    totals: dict[str, int] = {}

    def reporter(task: str, advance: int = 1, total: int | None = None, **_: float) -> None:
        if total is not None and task.startswith("stage"):
            totals[task] = total

    registry = Registry()
    budgets = ["trainer.epochs=5", "trainer.stage0_epochs=3", "trainer.stage2_epochs=2"]
    cfg = load_experiment(None, registry, [*BASE, *budgets, "trainer.patience=9"])
    metrics = run_experiment(cfg, registry, run_dir=tmp_path / "r", reporter=reporter).metrics
    assert totals == {
        "stage 0: target space": 3,
        "stage 1: side users": 5,
        "stage 2: overlapping users": 2,
    }
    assert metrics["stage0_budget"] == 3 and metrics["stage2_budget"] == 2
    assert 1 <= metrics["stage0_epochs"] <= 3 and 1 <= metrics["stage2_epochs"] <= 2
