"""Encoder throughput on CPU (items/s for plm, image, llm with their real default weights)
and the feature-cache hit path against encoding (target: >= 100x faster).

Run: ``pytest benchmarks/test_encoders.py --benchmark-only``; items/s are in extra_info.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from cdr.components import EncoderConfig
from cdr.data.records import Domain, Interactions, ItemContent
from cdr.encoders.features import encode_features
from cdr.encoders.image import ImageConfig
from cdr.encoders.llm import LlmConfig
from cdr.encoders.plm import PlmConfig
from cdr.registry import Registry

ITEMS = 48
WORDS = ("space novel kitchen knife steel adventure classic film drama comedy garden tool").split()  # noqa: SIM905


def _domain(root: Path) -> Domain:
    rng = np.random.default_rng(0)
    titles, descriptions, images = [], [], []
    for i in range(ITEMS):
        titles.append(" ".join(rng.choice(WORDS, 3)) + f" {i}")
        descriptions.append(" ".join(rng.choice(WORDS, int(rng.integers(10, 40)))))
        img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
        images.append(f"{i}.png")
    inter = Interactions(
        torch.arange(ITEMS) % 10, torch.arange(ITEMS), torch.ones(ITEMS), torch.arange(ITEMS)
    )
    content = ItemContent(tuple(titles), tuple(descriptions), (("x",),) * ITEMS, tuple(images))
    return Domain("bench", 10, tuple(map(str, range(ITEMS))), inter, content, None, root)


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Domain:
    return _domain(tmp_path_factory.mktemp("bench-items"))


CONFIGS: dict[str, EncoderConfig] = {
    "plm": PlmConfig(batch_size=16),
    "image": ImageConfig(batch_size=16),
    "llm": LlmConfig(batch_size=8),
}


@pytest.mark.models
@pytest.mark.parametrize("name", list(CONFIGS))
def test_items_per_second_cpu(benchmark, name: str, domain: Domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = CONFIGS[name]
    registry = Registry()
    # Warm up: load weights (and convert the GGUF once) outside the timed region.
    encode_features(cfg, registry, attrs.evolve(domain), "item", cache_root=tmp_path / "warm")
    runs = iter(range(100))

    def encode() -> None:
        result = encode_features(
            cfg, registry, domain, "item", cache_root=tmp_path / f"run{next(runs)}"
        )
        assert result.computed_rows == ITEMS

    benchmark.pedantic(encode, rounds=2, iterations=1)
    benchmark.extra_info["items_per_s"] = ITEMS / benchmark.stats.stats.mean
    benchmark.extra_info["device"] = "cpu"


@pytest.mark.models
def test_cache_hit_is_100x_faster_than_encoding(benchmark, domain: Domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = CONFIGS["plm"]
    registry = Registry()
    encode_features(cfg, registry, domain, "item", cache_root=tmp_path / "warm")  # load weights
    start = time.perf_counter()
    first = encode_features(cfg, registry, domain, "item", cache_root=tmp_path / "c")
    encode_seconds = time.perf_counter() - start
    assert not first.cached

    def hit() -> None:
        assert encode_features(cfg, registry, domain, "item", cache_root=tmp_path / "c").cached

    benchmark.pedantic(hit, rounds=20, iterations=1)
    ratio = encode_seconds / benchmark.stats.stats.mean
    benchmark.extra_info["encode_s"] = encode_seconds
    benchmark.extra_info["speedup"] = ratio
    assert ratio >= 100, f"cache hit only {ratio:.0f}x faster than encoding"
