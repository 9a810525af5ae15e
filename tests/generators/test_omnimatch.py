"""OmniMatch: the contrastive loss against a float64 loop, the gradient reversal and its
schedule, the like-minded memory against a brute-force search, the loss's parts; the
contract; it learns on planted data (beats the global mean)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from generator_contract import check_contract
from planted_coldstart import planted_run

from cdr.generators.omnimatch import (
    OmniMatchConfig,
    OmniMatchGenerator,
    component,
    contrastive_loss,
    grl_coefficient,
    reverse_gradient,
)


def test_contrastive_loss_matches_a_loop() -> None:
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(4, 3, generator=g, dtype=torch.float64)
    other = torch.randn(4, 3, generator=g, dtype=torch.float64)
    tau = 0.5

    def unit(v: list[float]) -> list[float]:
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    a = [unit(r) for r in anchor.tolist()]
    views = a + [unit(r) for r in other.tolist()]
    total = 0.0
    for i in range(4):
        dots = {j: sum(x * y for x, y in zip(a[i], views[j], strict=True)) / tau for j in range(8)}
        denominator = sum(math.exp(v) for j, v in dots.items() if j != i)
        total += -(dots[i + 4] - math.log(denominator))
    assert float(contrastive_loss(anchor, other, tau)) == pytest.approx(total / 4, rel=1e-12)


def test_gradient_reversal_and_its_schedule() -> None:
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([2.0, 5.0], dtype=torch.float64)).sum().backward()
    assert x.grad is not None and x.grad.tolist() == pytest.approx([-0.6, -1.5])
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert grl_coefficient(1.0) == pytest.approx(0.9999092, abs=1e-7)


def _generator(**overrides: object) -> OmniMatchGenerator:
    torch.manual_seed(0)
    config = OmniMatchConfig(dropout=0.0, **overrides)  # type: ignore[arg-type]
    return OmniMatchGenerator(3, 2, config).double()


def test_memory_finds_like_minded_users_never_the_user() -> None:
    gen = _generator(neighbours=2, memory=4)
    keys = torch.tensor(
        [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.1], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    values = torch.arange(10, dtype=torch.float64).view(5, 2)
    with torch.no_grad():
        assert gen.auxiliary_target(keys[:1]).tolist() == [[0.0, 0.0]]  # empty memory
        gen.remember(keys[:1], values[:1])
        # fewer usable neighbours than k: the mean of those there are; never the user
        assert gen.auxiliary_target(keys[:2]).tolist() == [[0.0, 0.0], values[0].tolist()]
        gen.remember(keys[1:3], values[1:3])
        gen.remember(keys[1:2], values[1:2] + 100)  # a known user is overwritten in place
        assert int(gen.filled.sum()) == 3 and int(gen.cursor) == 3
        gen.remember(keys[3:], values[3:])  # 5 users, 4 slots: user 0 (oldest) is dropped
    kept = {tuple(k) for k in gen.keys.tolist()}
    assert kept == {tuple(k) for k in keys[1:].tolist()} and bool(gen.filled.all())
    stored = dict(
        zip(map(tuple, keys.tolist()), [*values[:1], values[1] + 100, *values[2:]], strict=True)
    )
    queries = torch.tensor([[1.0, 0.05, 0.0], [0.9, 0.1, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        found = gen.auxiliary_target(queries)
        own = gen.auxiliary_target(queries, own=True)
    for q, row, mine in zip(queries.tolist(), found, own, strict=True):
        candidates = [k for k in kept if k != tuple(q)]  # never the user's own entry
        cosine = {
            k: sum(a * b for a, b in zip(q, k, strict=True)) / (math.hypot(*q) * math.hypot(*k))
            for k in candidates
        }
        best = sorted(candidates, key=lambda k: -cosine[k])[:2]
        expected = sum(stored[k] for k in best) / 2
        assert row.tolist() == pytest.approx(expected.tolist(), rel=1e-12)
        if tuple(q) in kept:  # a remembered (training) user reads their own vector
            assert mine.tolist() == pytest.approx(stored[tuple(q)].tolist())
        else:
            assert torch.equal(mine, row)
    # full memory, cursor at user 1's slot: a new user takes it even if user 1 is in the batch
    assert int(gen.cursor) == 1 and gen.keys[1].tolist() == keys[1].tolist()
    newcomer = torch.tensor([[0.3, 0.3, 0.3]], dtype=torch.float64)
    with torch.no_grad():
        gen.remember(torch.cat([keys[1:2], newcomer]), values[:2])
    assert gen.keys[1].tolist() == newcomer[0].tolist() and int(gen.cursor) == 2


def test_common_extractor_gets_the_reversed_domain_gradient() -> None:
    """Only the domain term reaches E_c here (no contrastive weight): its gradient is the
    classifier's cross-entropy gradient times -coefficient * domain_weight."""
    gen = _generator(contrastive_weight=0.0, grl_steps=4)
    g = torch.Generator().manual_seed(1)
    cond = torch.randn(5, 3, generator=g, dtype=torch.float64)
    target = torch.randn(5, 2, generator=g, dtype=torch.float64)
    gen.loss(target, cond).backward()  # step 1 of 4: coefficient at p = 0.25
    reversed_grad = gen.common.weight.grad
    assert reversed_grad is not None
    # the reference: the plain classifier loss on E_c of both documents, no reversal
    common = gen.common.weight.detach().clone().requires_grad_(True)
    feats = (
        torch.cat([cond @ common.T, target_in(gen, target) @ common.T]) + gen.common.bias.detach()
    )
    logits = torch.relu(feats) @ gen.domain.weight.detach().T + gen.domain.bias.detach()
    labels = torch.tensor([0] * 5 + [1] * 5)
    F.cross_entropy(logits, labels).backward()
    assert common.grad is not None
    expected = -grl_coefficient(0.25) * 0.25 * common.grad
    assert torch.allclose(reversed_grad, expected, rtol=1e-10, atol=1e-14)
    assert int(gen.steps) == 1


def target_in(gen: OmniMatchGenerator, target: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = gen.target_in(target)
    return out.detach()


def test_training_users_enter_the_memory_and_side_users_do_nothing() -> None:
    gen = _generator()
    cond, target = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    assert float(gen.loss(target, None)) == 0.0 and int(gen.filled.sum()) == 0
    gen.eval()
    gen.loss(target, cond)  # validation: no writes
    assert int(gen.filled.sum()) == 0
    gen.train()
    gen.loss(target, cond)
    assert int(gen.filled.sum()) == 4 and int(gen.steps) == 1
    with pytest.raises(ValueError, match="joint_weight"):
        OmniMatchConfig(joint_weight=0.0)  # the memory fills in the generator loss only


def test_contract() -> None:
    check_contract(component)
    check_contract(component, dim=3, in_dim=5)


@pytest.mark.slow
def test_learns_on_planted_data(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path, "omnimatch")
    assert metrics["rmse"] < metrics["ref/global_mean/rmse"]
    assert metrics["mae"] < metrics["ref/global_mean/mae"]
    # and it is personal: one vector for everyone reaches the item means at best
    assert metrics["rmse"] < metrics["ref/item_mean/rmse"]
