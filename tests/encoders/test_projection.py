from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.encoders.projection import ProjectionHead


@settings(max_examples=25, deadline=None)
@given(
    in_dim=st.integers(1, 16),
    out_dim=st.integers(1, 8),
    batch=st.integers(1, 5),
    activation=st.sampled_from(["tanh", "relu", "softmax"]),
)
def test_output_shape_and_range(in_dim: int, out_dim: int, batch: int, activation: str) -> None:
    torch.manual_seed(0)
    head = ProjectionHead(in_dim, hidden=8, out_dim=out_dim, activation=activation)
    out = head(torch.randn(batch, in_dim) * 10)
    assert out.shape == (batch, out_dim)
    if activation == "tanh":
        assert out.abs().max() <= 1.0
    elif activation == "relu":
        assert out.min() >= 0.0
    else:
        torch.testing.assert_close(out.sum(-1), torch.ones(batch))


def test_matches_hand_computation() -> None:
    head = ProjectionHead(3, hidden=4, out_dim=2)
    x = torch.randn(5, 3)
    w1, b1 = head.hidden_layer.weight, head.hidden_layer.bias
    w2, b2 = head.output_layer.weight, head.output_layer.bias
    expected = torch.tanh(torch.tanh(x @ w1.T + b1) @ w2.T + b2)
    torch.testing.assert_close(head(x), expected)


def test_paper_defaults() -> None:
    head = ProjectionHead(576)
    assert head.hidden_layer.out_features == 128
    assert head.output_layer.out_features == 32
    assert head.activation == "tanh"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"activation": "gelu"}, "activation"),
        ({"hidden": 0}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments_name_their_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        ProjectionHead(4, **kwargs)  # type: ignore[arg-type]
