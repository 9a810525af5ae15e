"""LACDR: reconstruction + alignment loss and the cross-domain decode against hand-computed
float64 references; the contract; it learns on planted data (beats the global mean)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from generator_contract import check_contract
from planted_coldstart import planted_run

from cdr.generators.lacdr import LACDRGenerator, component

# in_dim 3 -> latent 2 (auxiliary), dim 2 -> latent 2 (target); nn.Linear: y = W x
ENC_S = [[1.0, 0.0, 0.5], [0.2, -1.0, 0.0]]
DEC_S = [[1.0, 0.3], [0.0, 1.0], [-0.5, 0.2]]
ENC_T = [[0.7, 0.1], [-0.4, 1.1]]
DEC_T = [[1.2, 0.0], [0.3, -0.9]]
COND = [[0.5, -0.2, 0.1], [1.0, 0.4, -0.3]]
TARGET = [[0.3, 0.8], [-0.6, 0.2]]
ALPHA = 2.0


def _mat(w: list[list[float]], x: list[float]) -> list[float]:
    return [sum(a * b for a, b in zip(row, x, strict=True)) for row in w]


def _norm(a: list[float], b: list[float]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))


def _generator() -> LACDRGenerator:
    gen = LACDRGenerator(3, 2, 2, ALPHA).double()
    with torch.no_grad():
        for layer, w in (
            (gen.encode_source, ENC_S),
            (gen.decode_source, DEC_S),
            (gen.encode_target, ENC_T),
            (gen.decode_target, DEC_T),
        ):
            layer.weight.copy_(torch.tensor(w, dtype=torch.float64))
    return gen


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(TARGET, dtype=torch.float64), torch.tensor(COND, dtype=torch.float64)


def test_loss_is_both_reconstructions_plus_alpha_alignment() -> None:
    terms = []
    for c, t in zip(COND, TARGET, strict=True):
        source = _norm(_mat(DEC_S, _mat(ENC_S, c)), c)
        target = _norm(_mat(DEC_T, _mat(ENC_T, t)), t)
        align = _norm(_mat(ENC_S, c), _mat(ENC_T, t))
        terms.append(source + target + ALPHA * align)
    target, cond = _tensors()
    with torch.no_grad():
        assert float(_generator().loss(target, cond)) == pytest.approx(
            sum(terms) / len(terms), rel=1e-12
        )


def test_gradients_reach_both_encoders_through_the_alignment() -> None:
    """Autograd of the loss written with plain matrices (leaf tensors) is the module's."""
    weights = [
        torch.tensor(w, dtype=torch.float64, requires_grad=True)
        for w in (ENC_S, DEC_S, ENC_T, DEC_T)
    ]
    enc_s, dec_s, enc_t, dec_t = weights
    target, cond = _tensors()
    code_s, code_t = cond @ enc_s.T, target @ enc_t.T
    reference = (
        (code_s @ dec_s.T - cond).norm(dim=1)
        + (code_t @ dec_t.T - target).norm(dim=1)
        + ALPHA * (code_s - code_t).norm(dim=1)
    ).mean()
    reference.backward()
    gen = _generator()
    gen.loss(target, cond).backward()
    layers = (gen.encode_source, gen.decode_source, gen.encode_target, gen.decode_target)
    for layer, w in zip(layers, weights, strict=True):
        assert layer.weight.grad is not None and w.grad is not None
        assert torch.allclose(layer.weight.grad, w.grad, rtol=1e-12, atol=0)


def test_side_users_train_the_target_autoencoder_only() -> None:
    expected = sum(_norm(_mat(DEC_T, _mat(ENC_T, t)), t) for t in TARGET) / len(TARGET)
    target, _ = _tensors()
    gen = _generator()
    loss = gen.loss(target, None)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert gen.encode_source.weight.grad is None and gen.decode_source.weight.grad is None
    assert gen.encode_target.weight.grad is not None and gen.traits.side_users


def test_generate_decodes_the_auxiliary_code_in_the_target_domain() -> None:
    _, cond = _tensors()
    with torch.no_grad():
        out = _generator().generate(cond)
    for b, c in enumerate(COND):
        assert out[b].tolist() == pytest.approx(_mat(DEC_T, _mat(ENC_S, c)), rel=1e-12)


def test_contract() -> None:
    check_contract(component)
    check_contract(component, dim=3, in_dim=5)


@pytest.mark.slow
def test_learns_on_planted_data(tmp_path: Path) -> None:
    metrics = planted_run(tmp_path, "lacdr")
    assert metrics["rmse"] < metrics["ref/global_mean/rmse"]
    assert metrics["mae"] < metrics["ref/global_mean/mae"]
    # and it is personal: one vector for everyone reaches the item means at best
    assert metrics["rmse"] < metrics["ref/item_mean/rmse"]
