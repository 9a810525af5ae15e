from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cdr.components import BuildContext
from cdr.data.records import Domain
from cdr.encoders.features import compute_features
from cdr.encoders.mllm import MllmConfig, MllmEncoder, component
from cdr.errors import ConfigError
from cdr.registry import Registry


def test_tiny_vlm_items_with_and_without_images(
    image_domain: Domain, tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    cfg = MllmConfig(model=str(tiny_vlm_dir), batch_size=3)
    items = compute_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path)
    users = compute_features(cfg, Registry(), image_domain, "user", cache_root=tmp_path)
    assert items.shape == (4, 16) and users.shape == (5, 16)
    assert (items != 0).any(dim=1).all()  # item 2 has text but no image: text-only path
    assert (users[4] == 0).all() and (users[:4] != 0).any(dim=1).all()
    enc = MllmEncoder(cfg, torch.device("cpu"))
    plan = enc.plan(image_domain, "item")
    with torch.inference_mode():  # the image changes the features (same prompt, no image)
        with_image = enc.embed([plan.inputs[0]])
        without = enc.embed([type(plan.inputs[0])(plan.inputs[0].prompt)])
    assert not torch.allclose(with_image, without)
    torch.testing.assert_close(with_image[0], items[0], atol=1e-5, rtol=1e-4)


def test_mllm_needs_local_weights() -> None:
    with pytest.raises(ConfigError, match="fusion"):
        component.build(MllmConfig(), BuildContext())
