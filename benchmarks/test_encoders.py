"""Encoder speed on CPU: the rating-only ``id`` encoder (always), the real text/image/LLM
encoders with their default weights (skipped where the weights are not installed), and the
feature-cache hit path against encoding, timed interleaved (``--quick`` too).

Targets: about twice the measured time (or half the measured items/s) on the 2-core CPU with
one thread; the cache-hit ratio near measured / sqrt(3), so a 3x regression fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from PIL import Image

from cdr.components import EncoderConfig
from cdr.data.records import Domain, Interactions, ItemContent
from cdr.encoders.features import encode_features
from cdr.encoders.id import IdEncoder, IdEncoderConfig
from cdr.encoders.image import ImageConfig
from cdr.encoders.llm import LlmConfig
from cdr.encoders.plm import PlmConfig
from cdr.encoders.weights import efficientnet_lite0_file, minilm_dir, smollm2_gguf
from cdr.errors import ModelFileError
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
WEIGHTS: dict[str, Callable[[], Path]] = {
    "plm": minilm_dir,
    "image": efficientnet_lite0_file,
    "llm": smollm2_gguf,
}
#: items/s that each real encoder must reach on this CPU (one thread).
ITEMS_PER_S_TARGETS = {"plm": 30.0, "image": 8.0, "llm": 2.3}
#: feature-cache hit vs encoding the 48 items with MiniLM.
CACHE_SPEEDUP_TARGET = 1000.0


def _require_weights(name: str) -> None:
    try:
        WEIGHTS[name]()
    except ModelFileError as err:
        pytest.skip(f"{name} weights not installed: {err}")


def _id_domain(num_users: int, num_items: int, ratings: int) -> Domain:
    gen = torch.Generator().manual_seed(0)
    inter = Interactions(
        torch.randint(0, num_users, (ratings,), generator=gen),
        torch.randint(0, num_items, (ratings,), generator=gen),
        torch.randint(1, 6, (ratings,), generator=gen).float(),
        torch.zeros(ratings, dtype=torch.long),
    )
    empty = ("",) * num_items
    content = ItemContent(empty, empty, ((),) * num_items, (None,) * num_items)
    return Domain("id-bench", num_users, tuple(map(str, range(num_items))), inter, content)


@pytest.mark.parametrize(
    ("size", "users", "items", "ratings", "target"),
    [
        # exact dense SVD (U x I <= 4M cells)
        ("small", 1_000, 2_000, 20_000, 3.0),
        # seeded randomised SVD at MuSiC Task-1 target-domain size (Table 1)
        ("task1", 26_172, 159_997, 513_000, 12.0),
    ],
)
def test_id_encoder(
    size: str,
    users: int,
    items: int,
    ratings: int,
    target: float,
    timer: Callable,
    figures: Callable[..., None],
) -> None:
    domain = _id_domain(users, items, ratings)
    encoder = IdEncoder(IdEncoderConfig(dim=32))
    out: list[torch.Tensor] = []
    runs = [timer(lambda: out.append(encoder.encode(domain, "item"))) for _ in range(3)]
    assert out[-1].shape == (items, 32)
    torch.testing.assert_close(out[0], out[-1])  # deterministic
    cpu = sorted(r[1] for r in runs)[1]
    figures(
        f"encoders/id_{size}_cpu_s",
        f"id encoder (rank-32 SVD), {users:,} users x {items:,} items, {ratings:,} ratings",
        cpu,
        "CPU s",
        target=target,
        wall_s=sorted(r[0] for r in runs)[1],
        items_per_s=items / cpu,
    )


@pytest.mark.models
@pytest.mark.parametrize("name", list(CONFIGS))
def test_items_per_second_cpu(
    name: str, domain: Domain, tmp_path: Path, timer: Callable, figures: Callable[..., None]
) -> None:
    _require_weights(name)
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

    times = [timer(encode) for _ in range(2)]
    cpu = min(t[1] for t in times)
    figures(
        f"encoders/{name}_items_per_s",
        f"{name} encoder with its default weights, {ITEMS} items per call (CPU)",
        ITEMS / cpu,
        "items/CPU s",
        target=ITEMS_PER_S_TARGETS[name],
        higher=True,
        items_per_wall_s=ITEMS / min(t[0] for t in times),
    )


@pytest.mark.quick
@pytest.mark.models
def test_cache_hit_vs_encoding(
    domain: Domain, tmp_path: Path, interleave: type, figures: Callable[..., None], quick: bool
) -> None:
    _require_weights("plm")
    cfg = CONFIGS["plm"]
    registry = Registry()
    encode_features(cfg, registry, domain, "item", cache_root=tmp_path / "hit")  # weights, cache
    fresh = iter(range(100))
    hits = 10

    def encode() -> None:
        root = tmp_path / f"e{next(fresh)}"
        assert not encode_features(cfg, registry, domain, "item", cache_root=root).cached

    def hit() -> None:
        for _ in range(hits):
            root = tmp_path / "hit"
            assert encode_features(cfg, registry, domain, "item", cache_root=root).cached

    timing = interleave(hit, encode, rounds=2 if quick else 4, warmup=0)
    ratio = timing.speedup() * hits
    figures(
        "encoders/cache_hit_speedup_vs_encoding",
        f"plm features of {ITEMS} items: encoding's CPU time / a cache hit's",
        ratio,
        "x",
        target=CACHE_SPEEDUP_TARGET,
        higher=True,
        peer="encoding the same items with MiniLM (fresh cache)",
        hit_cpu_s=timing.median("a") / hits,
        encode_cpu_s=timing.median("b"),
    )
