"""XSimGCL: the noise keeps each vector's hyperoctant and has norm eps, the layers and the
cross-layer InfoNCE against float64 loop references, one pass per step shared by BPR and
the contrast, and learning on planted data through the inductive protocol."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from backbone_learning import planted_run
from torch import Tensor

from cdr.backbones.xsimgcl import XSimGCLBackbone, XSimGCLConfig, in_batch_info_nce, perturb
from cdr.interfaces import Graph

EDGES = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 4], [0, 1, 1, 2, 0, 2, 3, 3]])
GRAPH = Graph(EDGES, num_users=5, num_items=4)


def dense_adjacency(num_users: int, num_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` [N, N] in float64 from ``EDGES``, entry by entry."""
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in EDGES.T.tolist():
        a[u, num_users + i] = a[num_users + i, u] = 1.0
    d = a.sum(1)
    return a / torch.sqrt(d[:, None] * d[None, :]).clamp(min=1e-300) * (a > 0)


def loop_info_nce(a: Tensor, b: Tensor, tau: float) -> float:
    """mean_i -log(exp(cos(a_i, b_i)/tau) / sum_j exp(cos(a_i, b_j)/tau)), float64 loops."""
    a, b = a.double(), b.double()
    total = 0.0
    for i in range(a.shape[0]):
        sims = [float(a[i] @ b[j] / (a[i].norm() * b[j].norm())) / tau for j in range(b.shape[0])]
        total += -(sims[i] - math.log(sum(math.exp(s) for s in sims)))
    return total / a.shape[0]


def test_noise_has_norm_eps_and_keeps_every_sign() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=gen)
    x[0, 3] = 0.0  # a zero coordinate gets no noise (sign 0)
    torch.manual_seed(1)
    noise = (perturb(x, 0.3) - x).double()
    assert torch.equal(torch.sign(noise), torch.sign(x).double())  # same hyperoctant
    torch.testing.assert_close(noise[1:].norm(dim=1), torch.full((49,), 0.3, dtype=torch.float64))
    assert float(noise[0].norm()) < 0.3 + 1e-6
    # the direction is random: another draw differs, a uniform draw is not constant
    assert not torch.equal(perturb(x, 0.3), perturb(x, 0.3))
    assert float(noise[1:].abs().std(dim=1).mean()) > 0.01


def test_in_batch_info_nce_matches_a_float64_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(5, 3, generator=gen)
    got = float(in_batch_info_nce(a, b, 0.15))
    assert got == pytest.approx(loop_info_nce(a, b, 0.15), rel=1e-5)


def test_inference_is_the_unperturbed_mean_of_layers_1_to_l() -> None:
    model = XSimGCLBackbone(5, 4, 3, XSimGCLConfig(num_layers=3), seed=0)
    model.prepare(GRAPH)
    model.eval()
    with torch.no_grad():
        users, items = model.represent(GRAPH)
        a = dense_adjacency(5, 4)
        x = torch.cat([model.user_emb, model.item_emb]).double()
        layers = [a @ x, a @ a @ x, a @ a @ a @ x]  # layer 0 left out
        expected = sum(layers) / 3
    torch.testing.assert_close(torch.cat([users, items]).double(), expected, rtol=1e-5, atol=1e-6)


def test_regularization_is_the_cross_layer_contrast_of_the_step_pass_plus_l2() -> None:
    config = XSimGCLConfig(num_layers=2, contrast_layer=1, eps=0.2, cl_weight=0.5, reg_weight=2.0)
    model = XSimGCLBackbone(5, 4, 3, config, seed=0)
    model.prepare(GRAPH)
    torch.manual_seed(3)
    users_rep, items_rep = model.represent(GRAPH)  # the step's perturbed pass (for BPR)
    step = model.last_pass
    assert step is not None
    torch.testing.assert_close(torch.cat([users_rep, items_rep]), step.final)
    users, items = torch.tensor([0, 2, 2, 4]), torch.tensor([[1, 0], [0, 3], [0, 1], [3, 2]])
    with torch.no_grad():
        final, contrast = step.final.double(), step.contrast.double()
        u, i = [0, 2, 4], [5 + 0, 5 + 1, 5 + 3]  # distinct users; distinct positives (+U)
        cl = loop_info_nce(final[u], contrast[u], 0.15) + loop_info_nce(final[i], contrast[i], 0.15)
        emb_u, emb_i = model.user_emb.double(), model.item_emb.double()
        squares = sum(float(emb_u[k].pow(2).sum()) for k in users.tolist())
        squares += sum(float(emb_i[k].pow(2).sum()) for k in items.flatten().tolist())
    got = model.regularization(GRAPH, users, items)
    assert float(got.detach()) == pytest.approx(0.5 * cl + 2.0 * squares / (2 * 4), rel=1e-5)
    assert model.last_pass is None  # consumed: the next step runs a new pass
    got.backward()
    assert model.user_emb.grad is not None and float(model.user_emb.grad.abs().sum()) > 0


def test_the_contrasted_layer_is_perturbed_and_differs_from_the_final_one() -> None:
    model = XSimGCLBackbone(5, 4, 3, XSimGCLConfig(num_layers=2, eps=0.1), seed=0)
    model.prepare(GRAPH)
    with torch.no_grad():
        clean = model.forward_pass(GRAPH, perturbed=False)
        noisy = model.forward_pass(GRAPH, perturbed=True)
        a = dense_adjacency(5, 4)
        x = torch.cat([model.user_emb, model.item_emb]).double()
    torch.testing.assert_close(clean.contrast.double(), a @ x, rtol=1e-5, atol=1e-6)
    delta = (noisy.contrast - clean.contrast).double()
    torch.testing.assert_close(delta.norm(dim=1), torch.full((9,), 0.1, dtype=torch.float64))


def test_contrast_layer_above_the_depth_is_refused() -> None:
    with pytest.raises(ValueError, match=r"contrast_layer: 3 is above num_layers 2"):
        XSimGCLConfig(num_layers=2, contrast_layer=3)


def test_learns_planted_tastes_better_than_popularity(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path / "run", "xsimgcl", ["trainer.epochs=12", "trainer.patience=12"])
    # an untrained graph model already ranks by co-occurrence (about 1.7x popularity here):
    # training has to lift validation well past its first epochs
    assert metrics["best_epoch"] >= 3
    for domain in ("source", "target"):
        assert metrics[f"{domain}/ndcg@20"] > 1.8 * metrics[f"ref/popularity/{domain}/ndcg@20"]
