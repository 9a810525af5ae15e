"""SGL: views, the contrastive loss against an independent reference, and the epoch hook
reaching the backbone during real training."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from cdr.backbones.sgl import SGLBackbone, SGLConfig, drop_view, info_nce
from cdr.interfaces import Graph

EDGES = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 4], [0, 1, 1, 2, 0, 2, 3, 3]])
GRAPH = Graph(EDGES, num_users=5, num_items=4)


def test_info_nce_matches_a_float64_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    index = torch.tensor([1, 4])
    expected = 0.0
    for n in index.tolist():
        za = a[n].double() / a[n].double().norm()
        sims = [float(za @ (b[m].double() / b[m].double().norm())) / 0.5 for m in range(6)]
        expected += -(sims[n] - math.log(sum(math.exp(s) for s in sims)))
    assert float(info_nce(a, b, index, 0.5)) == pytest.approx(expected, rel=1e-5)


def test_edge_dropout_keeps_a_subset_and_node_dropout_drops_whole_nodes() -> None:
    big = torch.stack([torch.arange(10_000) % 100, torch.arange(10_000) % 70])
    view = drop_view(big, 100, 70, "ed", 0.3, torch.Generator().manual_seed(0))
    assert 0.66 < view.shape[1] / big.shape[1] < 0.74
    nd = drop_view(big, 100, 70, "nd", 0.5, torch.Generator().manual_seed(1))
    kept_users = set(nd[0].tolist())
    dropped = set(range(100)) - kept_users
    assert dropped and not {u for u in big[0].tolist() if u in dropped} & set(nd[0].tolist())


def test_views_are_redrawn_every_epoch_and_repeat_for_the_same_epoch() -> None:
    model = SGLBackbone(5, 4, 3, SGLConfig(drop_ratio=0.5), seed=3)
    model.set_epoch(0)
    first = [v.clone() for v in model.epoch_views(GRAPH)]
    model.set_epoch(1)
    second = model.epoch_views(GRAPH)
    assert any(not torch.equal(x, y) for x, y in zip(first, second, strict=True))
    again = SGLBackbone(5, 4, 3, SGLConfig(drop_ratio=0.5), seed=3)  # a resumed run
    again.set_epoch(0)
    assert all(torch.equal(x, y) for x, y in zip(first, again.epoch_views(GRAPH), strict=True))


def test_regularization_is_ssl_plus_l2_and_trains_the_embeddings() -> None:
    model = SGLBackbone(5, 4, 3, SGLConfig(ssl_weight=0.0, reg_weight=2.0), seed=0)
    users, items = torch.tensor([0, 2]), torch.tensor([[1, 3], [0, 2]])
    squares = model.user_emb[users].pow(2).sum() + model.item_emb[items.flatten()].pow(2).sum()
    # lambda_2 * ||Theta_batch||^2 / 2, per batch user (as LightGCN's and SGL's code)
    torch.testing.assert_close(model.regularization(GRAPH, users, items), 2.0 * squares / 2 / 2)
    ssl = SGLBackbone(5, 4, 3, SGLConfig(reg_weight=0.0), seed=0)
    loss = ssl.regularization(GRAPH, users, items)
    assert float(loss.detach()) > 0
    loss.backward()
    assert ssl.user_emb.grad is not None and float(ssl.user_emb.grad.abs().sum()) > 0


def test_training_calls_the_epoch_hook_every_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdr.config import load_experiment
    from cdr.experiment import run_experiment
    from cdr.registry import Registry

    monkeypatch.chdir(tmp_path)
    seen: list[int] = []
    original = SGLBackbone.set_epoch

    def record(self: SGLBackbone, epoch: int) -> None:
        if self.training:
            seen.append(epoch)
        original(self, epoch)

    monkeypatch.setattr(SGLBackbone, "set_epoch", record)
    registry = Registry()
    overrides = ["dataset.size=tiny", "trainer.epochs=3", "trainer.patience=10"]
    components = {"generator": "none", "backbone": "sgl", "aligner": "none"}
    cfg = load_experiment(None, registry, overrides, components)
    metrics = run_experiment(cfg, registry, run_dir=tmp_path / "run").metrics
    assert seen == [0, 0, 1, 1, 2, 2]  # two domains' backbones, epochs 0..2
    assert 0.0 <= metrics["target/ndcg@20"] <= 1.0
