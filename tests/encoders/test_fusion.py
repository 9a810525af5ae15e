from __future__ import annotations

from pathlib import Path

import torch

from cdr.data.records import Domain
from cdr.encoders.features import compute_features, encode_features
from cdr.encoders.fusion import FusionConfig, FusionEncoder
from cdr.encoders.image import ImageConfig
from cdr.encoders.llm import LlmConfig
from cdr.registry import Registry


def _config(llm: Path, vit: Path, **kw: int) -> FusionConfig:
    return FusionConfig(
        text=LlmConfig(model=str(llm)), image=ImageConfig(backbone="vit", model=str(vit)), **kw
    )


def test_parts_projected_and_concatenated(
    image_domain: Domain, tiny_llm_dir: Path, tiny_vit_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_llm_dir, tiny_vit_dir, text_dim=6, image_dim=5)
    items = compute_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path)
    assert items.shape == (4, 11) == (4, FusionEncoder(cfg, torch.device("cpu")).dim)
    assert (items[2, 6:] == 0).all() and (items[2, :6] != 0).any()  # no image: zero image part
    again = encode_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path)
    assert again.cached and again.features is not None and torch.equal(again.features, items)
    direct = FusionEncoder(cfg, torch.device("cpu")).encode(image_domain, "item")
    torch.testing.assert_close(direct, items, atol=1e-5, rtol=1e-4)


def test_no_projection_keeps_normalised_parts(
    image_domain: Domain, tiny_llm_dir: Path, tiny_vit_dir: Path, tmp_path: Path
) -> None:
    cfg = _config(tiny_llm_dir, tiny_vit_dir, text_dim=0, image_dim=0)
    users = compute_features(cfg, Registry(), image_domain, "user", cache_root=tmp_path)
    assert users.shape == (5, 32)
    norms = users[:, :16].norm(dim=1)
    torch.testing.assert_close(norms[:4], torch.ones(4))  # users 0-3 have reviews
