from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support import FAKE_OVERRIDES, registry_with_fakes
from typer.testing import CliRunner

from cdr.config import config_to_toml
from cdr.config.loading import apply_overrides, structure_experiment
from cdr.data.records import Interactions
from cdr.errors import BundleError, InputError, RunError
from cdr.generators.identity import IdentityGenerator
from cdr.serving.artifacts import ServingArtifacts, save_artifacts
from cdr.serving.bundle import Recommender, export_bundle
from cdr.serving.fold_in import fit_fold_in

REGISTRY = registry_with_fakes()
BASE = list(FAKE_OVERRIDES)


def finished_run(tmp_path: Path) -> Path:
    """A run dir with artifacts: 3 users, 4 source items, 5 target items, dim 2."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = structure_experiment(apply_overrides({}, BASE), REGISTRY)
    (run_dir / "config.toml").write_text(config_to_toml(cfg, REGISTRY))
    source_items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    history = Interactions(
        torch.tensor([0, 0, 1, 2]),
        torch.tensor([0, 2, 1, 3]),
        torch.tensor([5.0, 1.0, 2.0, 4.0]),
        torch.zeros(4, dtype=torch.long),
    )
    # users' auxiliary vectors = their rating-weighted history means (fold-in is the identity)
    source_users = torch.tensor([[1.0, 1 / 6], [0.0, 1.0], [-1.0, 0.0]])
    art = ServingArtifacts(
        user_ids=("u0", "u1", "u2"),
        source_item_ids=("s0", "s1", "s2", "s3"),
        target_item_ids=("t0", "t1", "t2", "t3", "t4"),
        source_users=source_users,
        target_users=torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]),
        source_items=source_items,
        target_items=torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 2.0], [-1.0, -1.0]]),
        seen_user=torch.tensor([0, 0, 1]),
        seen_item=torch.tensor([0, 1, 2]),
        generator=IdentityGenerator(),
        generator_spec={"kind": "identity", "dim": 2, "in_dim": 2},
    )
    save_artifacts(run_dir, art, history)
    return run_dir


def test_export_then_recommend_round_trip(tmp_path: Path) -> None:
    bundle = export_bundle(finished_run(tmp_path), tmp_path / "model.cdr", REGISTRY)
    model = Recommender.load(bundle, REGISTRY)
    [u0, u1] = model.recommend_known(["u0", "u1"], k=2)
    assert u0.items == ("t0", "t1") and u0.scores == (3.0, 2.0)
    assert u1.items == ("t2", "t3")
    [u0_new] = model.recommend_known(["u0"], k=2, exclude_seen=True)
    assert "t0" not in u0_new.items and "t1" not in u0_new.items


def test_cold_start_user_from_auxiliary_history(tmp_path: Path) -> None:
    model = Recommender.load(
        export_bundle(finished_run(tmp_path), tmp_path / "m.cdr", REGISTRY), REGISTRY
    )
    rec = model.recommend_cold("new", [("s1", 5.0)], k=1)  # history of item s1 = [0, 1]
    assert rec.cold_start and rec.items == ("t2",)
    with pytest.raises(InputError, match="unknown auxiliary item id"):
        model.recommend_cold("new", [("nope", 1.0)])


def test_fold_in_is_exact_when_user_vectors_are_history_means() -> None:
    items = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    user, item = torch.tensor([0, 0, 1, 1, 2, 3, 3, 3]), torch.tensor([0, 1, 2, 3, 4, 5, 0, 2])
    rating = torch.tensor([1.0, 2.0, 3.0, 1.0, 4.0, 2.0, 2.0, 1.0])
    means = torch.zeros(4, 3).index_add_(0, user, items[item] * rating[:, None])
    means /= torch.zeros(4).index_add_(0, user, rating)[:, None]
    w = fit_fold_in(
        user, item, rating, means @ torch.diag(torch.tensor([2.0, 1.0, 0.5])), items, ridge=1e-8
    )
    assert torch.allclose(w, torch.diag(torch.tensor([2.0, 1.0, 0.5])), atol=1e-3)


def test_bad_bundles_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        Recommender.load(tmp_path / "none.cdr", REGISTRY)
    (tmp_path / "junk.cdr").write_text("not a zip")
    with pytest.raises(BundleError, match="not a cdr bundle"):
        Recommender.load(tmp_path / "junk.cdr", REGISTRY)
    with pytest.raises(RunError, match="no serving artifacts"):
        export_bundle(tmp_path, tmp_path / "x.cdr", REGISTRY)


def test_recommend_cli_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cdr.cli import serve
    from cdr.cli.app import app

    monkeypatch.setattr(serve, "Registry", registry_with_fakes)
    bundle = export_bundle(finished_run(tmp_path), tmp_path / "model.cdr", REGISTRY)
    history = tmp_path / "h.json"
    history.write_text(json.dumps([{"item": "s1", "rating": 4}]))
    runner = CliRunner()
    known = runner.invoke(app, ["recommend", str(bundle), "--user", "u1", "--k", "1"])
    assert known.exit_code == 0, known.output
    assert json.loads(known.stdout)[0]["items"][0]["item"] == "t2"
    cold = runner.invoke(
        app, ["recommend", str(bundle), "--user", "x", "--history", str(history), "--k", "1"]
    )
    assert cold.exit_code == 0, cold.output
    assert json.loads(cold.stdout)[0]["cold_start"] is True
    unknown = runner.invoke(app, ["recommend", str(bundle), "--user", "zzz"])
    assert unknown.exit_code == 1 and "unknown user id(s) 'zzz'" in unknown.stderr
