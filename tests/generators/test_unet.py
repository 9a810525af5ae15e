"""Denoisers: shapes, condition handling, time dependence."""

from __future__ import annotations

import pytest
import torch

from cdr.generators.unet import MLPDenoiser, VectorUNet


@pytest.mark.parametrize("widths", [(16,), (32, 16), (64, 32, 16)])
def test_unet_shapes_and_skip_widths(widths: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = VectorUNet(dim=8, cond_dim=5, widths=widths, time_dim=8)
    x, t, c = torch.randn(4, 8), torch.tensor([0, 1, 2, 9]), torch.randn(4, 5)
    assert net(x, t, c).shape == (4, 8)
    assert net(x, t, None).shape == (4, 8)
    assert len(net.down) == len(widths) - 1 == len(net.up)


def test_condition_is_added_to_input_when_widths_match() -> None:
    torch.manual_seed(0)
    net = VectorUNet(dim=6, cond_dim=6, widths=(16, 8), time_dim=8).eval()
    x, t, c = torch.randn(3, 6), torch.tensor([1, 2, 3]), torch.randn(3, 6)
    assert torch.allclose(net(x, t, c), net(x + c, t, None))
    assert not torch.allclose(net(x, t, c), net(x, t, None))


@pytest.mark.parametrize("make", [VectorUNet, MLPDenoiser])
def test_output_depends_on_t_and_gradients_flow(make) -> None:
    torch.manual_seed(0)
    net = make(4, 4, time_dim=8)
    x = torch.randn(5, 4)
    a = net(x, torch.zeros(5, dtype=torch.long), None)
    b = net(x, torch.full((5,), 7), None)
    assert not torch.allclose(a, b)
    (a.square().sum()).backward()
    assert all(p.grad is not None for p in net.parameters())  # cond proj is Identity here


def test_unet_rejects_empty_widths() -> None:
    with pytest.raises(ValueError, match="widths"):
        VectorUNet(4, 4, widths=())
