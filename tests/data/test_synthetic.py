from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from cdr.data.records import CrossDomainDataset
from cdr.data.synthetic import PRESETS, TOPICS, SyntheticConfig, generate


def _same(a: CrossDomainDataset, b: CrossDomainDataset) -> bool:
    return all(
        torch.equal(getattr(x.interactions, f), getattr(y.interactions, f))
        for x, y in ((a.source, b.source), (a.target, b.target))
        for f in ("user", "item", "rating", "timestamp")
    ) and a.source.items.title == b.source.items.title and a.target.reviews == b.target.reviews


def test_same_seed_same_dataset_and_other_seed_differs() -> None:
    cfg = SyntheticConfig(size="tiny", images=False)
    a, b = generate(cfg)[0], generate(cfg)[0]
    assert _same(a, b)
    assert not _same(a, generate(SyntheticConfig(size="tiny", images=False, seed=1))[0])


def test_user_groups_follow_the_configured_proportions() -> None:
    ds = generate(SyntheticConfig(size="tiny", images=False, num_users=200,
                                  overlap_fraction=0.4, side_fraction=0.35))[0]
    assert ds.num_users == 200
    assert len(ds.overlapping_users()) == 80
    assert len(ds.side_users()) == 70
    assert len(ds.source_only_users()) == 50


def test_default_preset_has_the_documented_size() -> None:
    ds = generate(SyntheticConfig(images=False))[0]
    total = len(ds.source.interactions) + len(ds.target.interactions)
    assert ds.num_users == PRESETS["default"]["num_users"] == 2000
    assert ds.source.num_items == ds.target.num_items == 800
    assert 40_000 <= total <= 60_000
    ratings = torch.cat([ds.source.interactions.rating, ds.target.interactions.rating])
    assert set(ratings.unique().tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(ratings.unique()) == 5


def test_planted_taste_beats_popularity_and_random_on_ratings() -> None:
    ds, truth = generate(SyntheticConfig(images=False))
    inter = ds.target.interactions
    gen = torch.Generator().manual_seed(0)
    held = torch.rand(len(inter), generator=gen) < 0.2
    train, test = inter.select(~held), inter.select(held)
    sums = torch.zeros(ds.target.num_items).index_add_(0, train.item, train.rating)
    counts = torch.bincount(train.item, minlength=ds.target.num_items).float()
    item_mean = torch.where(counts > 0, sums / counts.clamp(min=1), train.rating.mean())

    def rmse(pred: torch.Tensor) -> float:
        return float(((pred - test.rating) ** 2).mean().sqrt())

    oracle = rmse(truth.expected_rating("target", test.user, test.item))
    popularity = rmse(item_mean[test.item])
    random = rmse(torch.randint(1, 6, (len(test),), generator=gen).float())
    assert oracle < 0.8 * popularity < random


def test_shared_taste_links_the_two_domains() -> None:
    _, truth = generate(SyntheticConfig(images=False))
    src, tgt = truth.taste["source"], truth.taste["target"]
    same = torch.nn.functional.cosine_similarity(src, tgt).mean()
    other = torch.nn.functional.cosine_similarity(src, tgt.roll(1, 0)).mean()
    assert same > 0.5 > other + 0.4


def test_item_text_and_categories_name_the_primary_topic() -> None:
    ds, truth = generate(SyntheticConfig(size="tiny", images=False))
    primary = truth.item_vectors["target"].argmax(1).tolist()
    for i, topic in enumerate(primary):
        name, words = TOPICS[topic]
        assert ds.target.items.categories[i][1] == name.title()
        assert any(w in ds.target.items.description[i] for w in words)


def test_images_are_drawn_relative_to_the_domain_root(tmp_path: Path) -> None:
    ds, truth = generate(SyntheticConfig(size="tiny"), workdir=tmp_path)
    domain = ds.source
    assert domain.root == tmp_path / "source"
    assert all(path is not None for path in domain.items.image)
    first = Image.open(domain.root / str(domain.items.image[0]))
    assert first.size == (32, 32)
    # the background hue follows the primary topic: items of one topic look alike
    primary = truth.item_vectors["source"].argmax(1)
    corner = torch.tensor([list(Image.open(domain.root / str(p)).getpixel((0, 0)))
                           for p in domain.items.image], dtype=torch.float)
    same = [(corner[primary == k] - corner[primary == k].mean(0)).abs().mean()
            for k in primary.unique()]
    assert max(same) < (corner - corner.mean(0)).abs().mean()


def test_bad_config_values_name_their_field() -> None:
    with pytest.raises(ValueError, match="size"):
        SyntheticConfig(size="huge")
    with pytest.raises(ValueError, match="num_topics"):
        SyntheticConfig(num_topics=99)
