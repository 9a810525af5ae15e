from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from cdr.data.records import Domain
from cdr.encoders.features import compute_features
from cdr.encoders.image import ImageConfig, ImageEncoder, load_images
from cdr.errors import ConfigError
from cdr.registry import Registry


def test_vit_items_and_user_means(image_domain: Domain, tiny_vit_dir: Path, tmp_path: Path) -> None:
    cfg = ImageConfig(backbone="vit", model=str(tiny_vit_dir), batch_size=2)
    items = compute_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path / "c")
    users = compute_features(cfg, Registry(), image_domain, "user", cache_root=tmp_path / "c")
    assert items.shape == (4, 16) and users.shape == (5, 16)
    assert (items[2] == 0).all() and (items[[0, 1, 3]] != 0).any(dim=1).all()
    # users: 0 -> items {0, 1}; 1 -> {1, 2 (no image)}; 2 -> {3}; 3 -> {2}; 4 -> none
    torch.testing.assert_close(users[0], (items[0] + items[1]) / 2)
    torch.testing.assert_close(users[1], items[1])
    torch.testing.assert_close(users[2], items[3])
    assert (users[3] == 0).all() and (users[4] == 0).all()


def test_changed_image_file_misses_the_cache(
    image_domain: Domain, tiny_vit_dir: Path, tmp_path: Path
) -> None:
    cfg = ImageConfig(backbone="vit", model=str(tiny_vit_dir))
    before = compute_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path / "c")
    assert image_domain.root is not None
    target = image_domain.root / str(image_domain.items.image[0])
    target.write_bytes((image_domain.root / str(image_domain.items.image[3])).read_bytes())
    after = compute_features(cfg, Registry(), image_domain, "item", cache_root=tmp_path / "c")
    torch.testing.assert_close(after[0], before[3])


def test_load_images_resizes_and_crops(image_domain: Domain) -> None:
    assert image_domain.root is not None
    pixels = load_images([str(image_domain.root / str(image_domain.items.image[0]))], 24)
    assert pixels.shape == (1, 3, 24, 24) and pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_missing_image_file_is_a_zero_row(image_domain: Domain, tiny_vit_dir: Path) -> None:
    images = ("gone.png", *image_domain.items.image[1:])
    domain = attrs.evolve(image_domain, items=attrs.evolve(image_domain.items, image=images))
    enc = ImageEncoder(ImageConfig(backbone="vit", model=str(tiny_vit_dir)), torch.device("cpu"))
    assert (enc.encode(domain, "item")[0] == 0).all()


def test_vit_needs_a_model_path() -> None:
    from cdr.components import BuildContext
    from cdr.encoders.image import component

    with pytest.raises(ConfigError, match=r"^model:"):
        component.build(ImageConfig(backbone="vit"), BuildContext())


@pytest.mark.models
def test_default_efficientnet_lite0(image_domain: Domain) -> None:
    enc = ImageEncoder(ImageConfig(), torch.device("cpu"))
    items = enc.encode(image_domain, "item")
    assert (
        items.shape == (4, 1280) and (items[2] == 0).all() and (items[[0, 1, 3]] > 0).any(1).all()
    )
