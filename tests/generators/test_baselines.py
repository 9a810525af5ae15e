"""Baseline generators (mapping, ptupcdr, diffcdr, tgt, cmf) and the shared contract."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import torch

from cdr.components import BuildContext
from cdr.errors import CompositionError
from cdr.interfaces import Generator, History

NAMES = ["ddpm", "identity", "mapping", "ptupcdr", "diffcdr", "tgt", "cmf"]


def _build(name: str, dim: int = 4, in_dim: int = 4):
    ep = next(e for e in entry_points(group="cdr.generators") if e.name == name)
    component = ep.load()
    torch.manual_seed(0)
    return component, component.build(component.config_cls(), BuildContext(dim=dim, in_dim=in_dim))


@pytest.mark.parametrize("name", NAMES)
def test_contract_shapes_determinism_state_round_trip(name: str) -> None:
    _, gen = _build(name)
    assert isinstance(gen, Generator)
    target, cond = torch.randn(6, 4), torch.randn(6, 4)
    assert gen.loss(target, cond).ndim == 0
    assert gen.loss(target, None).ndim == 0
    gen.eval()
    with torch.no_grad():
        out = gen.generate(cond, seed=5)
        assert out.shape == (6, 4)
        assert torch.equal(out, gen.generate(cond, seed=5))
    _, again = _build(name)
    again.load_state_dict(gen.state_dict())
    again.eval()
    with torch.no_grad():
        assert torch.equal(again.generate(cond, seed=5), out)


@pytest.mark.parametrize("name", ["identity", "cmf", "diffcdr"])
def test_width_mismatch_is_a_composition_error(name: str) -> None:
    with pytest.raises(CompositionError):
        _build(name, dim=4, in_dim=5)


def test_ptupcdr_bridge_uses_history_and_starts_at_identity() -> None:
    _, gen = _build("ptupcdr")
    cond = torch.randn(3, 4)
    assert torch.allclose(gen.generate(cond), cond)  # W_u = I at initialisation
    items = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    p = gen.characteristic(cond, History(items, mask))
    assert torch.allclose(p[2], torch.zeros(4))  # no history -> zero characteristic
    # padded slots do not matter
    items2 = items.clone()
    items2[0, 2:] = 100.0
    assert torch.allclose(gen.characteristic(cond, History(items2, mask))[0], p[0])


def test_mapping_learns_a_linear_map() -> None:
    _, gen = _build("mapping")
    w = torch.randn(4, 4)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    for _ in range(300):
        x = torch.randn(64, 4)
        loss = gen.loss(x @ w, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randn(64, 4)
    with torch.no_grad():
        err = float((gen.generate(x) - x @ w).square().mean())
    assert err < 0.1 * float((x @ w).var())


def test_tgt_learns_the_mean_and_ignores_the_condition() -> None:
    _, gen = _build("tgt")
    opt = torch.optim.Adam(gen.parameters(), lr=5e-2)
    target = torch.randn(100, 4) + torch.tensor([1.0, -2.0, 0.5, 0.0])
    for _ in range(300):
        loss = gen.loss(target, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = gen.generate(torch.randn(2, 4))
    assert torch.allclose(out[0], target.mean(0), atol=0.05) and torch.equal(out[0], out[1])


def test_diffcdr_starts_from_the_noised_condition() -> None:
    _, gen = _build("diffcdr")
    cond = torch.randn(2000, 4) * 0 + 3.0
    start = gen.initial_sample(cond, torch.Generator().manual_seed(0))
    abar = float(gen.schedule.alphas_cumprod[-1])
    assert float(start.mean()) == pytest.approx(3.0 * abar**0.5, abs=0.05)
