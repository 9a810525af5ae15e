"""CATN: aspect extraction, aspect correlation and the rating against a float64 loop over
users, aspects and document positions; the collapsed user vector gives the same ratings
through a dot product; the contract; it learns on planted data (beats the global mean)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from generator_contract import check_contract
from planted_coldstart import planted_run

from cdr.generators.catn import CATNGenerator, component
from cdr.interfaces import History

IN_DIM, DIM, M, K = 3, 2, 2, 3


def _generator() -> CATNGenerator:
    torch.manual_seed(3)
    gen = CATNGenerator(IN_DIM, DIM, M, K).double()
    with torch.no_grad():  # non-trivial biases and item importances
        for p in (gen.project_bias, gen.gate_bias, gen.item_importance):
            p.copy_(torch.randn(p.shape, dtype=torch.float64))
    return gen.requires_grad_(False)


def _case() -> tuple[torch.Tensor, History, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    cond = torch.randn(3, IN_DIM, generator=g, dtype=torch.float64)
    items = torch.randn(3, 2, IN_DIM, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    targets = torch.randn(3, DIM, generator=g, dtype=torch.float64)  # item vectors e_i
    return cond, History(items, mask), targets


def _softmax(values: list[float]) -> list[float]:
    top = max(values)
    e = [math.exp(v - top) for v in values]
    return [x / sum(e) for x in e]


def _reference_rating(
    gen: CATNGenerator, c: torch.Tensor, doc: list[torch.Tensor], e: torch.Tensor
) -> float:
    """r = sum_{m,n} g_m h_n a_m^T W_s P_n e, every sum an explicit loop."""
    positions = [c, *doc]
    aspects = []
    for m in range(M):
        s = []
        for x in positions:
            row = []
            for k in range(K):
                value = sum(float(x[d]) * float(gen.project[m, d, k]) for d in range(IN_DIM))
                gate = sum(float(x[d]) * float(gen.gate[m, d, k]) for d in range(IN_DIM))
                value += float(gen.project_bias[m, k])
                gate += float(gen.gate_bias[m, k])
                row.append(value / (1.0 + math.exp(-gate)))
            s.append(row)
        logits = [sum(r[k] * float(gen.query[m, k]) for k in range(K)) for r in s]
        att = _softmax(logits)
        aspects.append([sum(att[p] * s[p][k] for p in range(len(s))) for k in range(K)])
    g = _softmax([sum(a[k] * float(gen.importance[k]) for k in range(K)) for a in aspects])
    h = _softmax([float(v) for v in gen.item_importance])
    rating = 0.0
    for m in range(M):
        for n in range(M):
            b_n = [
                sum(float(gen.item_project[n, k, d]) * float(e[d]) for d in range(DIM))
                for k in range(K)
            ]
            s_mn = sum(
                aspects[m][k] * float(gen.correlation[k, j]) * b_n[j]
                for k in range(K)
                for j in range(K)
            )
            rating += g[m] * h[n] * s_mn
    return rating


def test_rating_matches_the_aspect_loop_and_the_collapsed_vector() -> None:
    gen = _generator()
    cond, history, items = _case()
    with torch.no_grad():
        pairwise = gen.aspect_scores(cond, items, history)
        vectors = gen.generate(cond, history=history)
    for b in range(3):
        doc = [history.items[b, slot] for slot in range(2) if history.mask[b, slot]]
        expected = _reference_rating(gen, cond[b], doc, items[b])
        assert float(pairwise[b]) == pytest.approx(expected, rel=1e-10)
        assert float(vectors[b] @ items[b]) == pytest.approx(expected, rel=1e-10)
    # without a history the document is the user's own vector alone
    with torch.no_grad():
        alone = gen.generate(cond)
    expected = _reference_rating(gen, cond[0], [], items[0])
    assert float(alone[0] @ items[0]) == pytest.approx(expected, rel=1e-10)


def test_padded_history_slots_do_not_matter() -> None:
    gen = _generator()
    cond, history, _ = _case()
    noisy = history.items.clone()
    noisy[~history.mask] = 100.0
    with torch.no_grad():
        a = gen.generate(cond, history=history)
        b = gen.generate(cond, history=History(noisy, history.mask))
    assert torch.allclose(a, b, rtol=1e-12, atol=0)


def test_loss_regresses_to_the_target_vector_for_positive_lambda() -> None:
    gen = _generator()
    cond, history, targets = _case()
    with torch.no_grad():
        expected = (gen.generate(cond, history=history) - targets).square().mean()
        assert float(gen.loss(targets, cond, history)) == pytest.approx(float(expected))
        assert float(gen.loss(targets, None)) == 0.0
    assert gen.traits.uses_history and gen.traits.joint_weight == 0.0


def test_contract() -> None:
    check_contract(component)
    check_contract(component, dim=3, in_dim=5)


@pytest.mark.slow
def test_learns_on_planted_data(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path, "catn")
    assert metrics["rmse"] < metrics["ref/global_mean/rmse"]
    assert metrics["mae"] < metrics["ref/global_mean/mae"]
    # and it is personal: one vector for everyone reaches the item means at best
    assert metrics["rmse"] < metrics["ref/item_mean/rmse"]
