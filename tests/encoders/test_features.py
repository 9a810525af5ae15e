from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from encoders.encoder_fakes import STATE, CountingConfig, Interrupt, registry_with_counting
from support import tiny_domain

from cdr.encoders.features import Shard, compute_features, encode_features
from cdr.encoders.id import IdEncoderConfig
from cdr.errors import ConfigError


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int | None, dict[str, float]]] = []

    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        self.calls.append((task, advance, total, info))

    def tasks(self) -> set[str]:
        return {c[0] for c in self.calls}


@pytest.fixture(autouse=True)
def _reset() -> None:
    STATE.embedded, STATE.calls, STATE.fail_after = 0, 0, None


def _domain(num_items: int = 11) -> Any:
    users = [i % 5 for i in range(num_items)]
    return tiny_domain("books", 7, users, list(range(num_items)), num_items)


def test_second_run_reuses_cache_and_says_so(tmp_path: Path) -> None:
    registry, domain, cfg = registry_with_counting(), _domain(), CountingConfig()
    first = compute_features(cfg, registry, domain, "item", cache_root=tmp_path)
    assert first.shape == (11, 4) and STATE.embedded == 11
    rec = Recorder()
    second = compute_features(cfg, registry, domain, "item", cache_root=tmp_path, reporter=rec)
    assert torch.equal(first, second)
    assert STATE.embedded == 11  # nothing re-encoded
    assert any("cache hit" in t for t in rec.tasks())


def test_cache_key_follows_config_and_content(tmp_path: Path) -> None:
    registry, domain = registry_with_counting(), _domain()
    compute_features(CountingConfig(), registry, domain, "item", cache_root=tmp_path)
    compute_features(CountingConfig(dim=3), registry, domain, "item", cache_root=tmp_path)
    assert STATE.embedded == 22
    changed = tiny_domain("films", 7, [0], [0], 11)  # other titles
    compute_features(CountingConfig(), registry, changed, "item", cache_root=tmp_path)
    assert STATE.embedded == 33
    users = compute_features(CountingConfig(), registry, domain, "user", cache_root=tmp_path)
    assert users.shape == (7, 4) and (users[5:] == 0).all() and (users[:5] != 0).any()


def test_rows_another_split_encoded_are_reused_not_reencoded(tmp_path: Path) -> None:
    registry, cfg = registry_with_counting(), CountingConfig()
    full = tiny_domain("books", 7, [0, 1, 2, 3, 4, 0], [0, 1, 2, 3, 4, 5], 6)
    # a split that hides user 4 and user 0's last review: 3 users keep their text
    split = attrs.evolve(
        full,
        interactions=full.interactions.select(torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool)),
        reviews=full.reviews[:4] if full.reviews else None,
    )
    reference = compute_features(cfg, registry, split, "user", cache_root=tmp_path / "ref")
    STATE.embedded = 0
    compute_features(cfg, registry, full, "user", cache_root=tmp_path)
    assert STATE.embedded == 5
    STATE.embedded = 0
    result = encode_features(cfg, registry, split, "user", cache_root=tmp_path)
    assert STATE.embedded == 1  # only user 0, whose text changed
    assert result.reused_rows == 3 and result.computed_rows == 4  # + 3 empty rows computed
    assert result.features is not None and torch.equal(result.features, reference)
    STATE.embedded = 0
    compute_features(CountingConfig(dim=3), registry, split, "user", cache_root=tmp_path)
    assert STATE.embedded == 4  # another config reuses nothing


def test_interrupted_run_resumes_after_completed_chunks(tmp_path: Path) -> None:
    registry, domain, cfg = registry_with_counting(), _domain(), CountingConfig(batch_size=1)
    reference = compute_features(cfg, registry, domain, "item", cache_root=tmp_path / "ref")
    STATE.embedded, STATE.fail_after = 0, 7
    with pytest.raises(Interrupt):
        encode_features(cfg, registry, domain, "item", cache_root=tmp_path, chunk_size=3)
    assert STATE.embedded == 7  # chunks [0,3) and [3,6) were saved, [6,9) was cut short
    STATE.embedded, STATE.fail_after = 0, None
    rec = Recorder()
    result = encode_features(
        cfg, registry, domain, "item", cache_root=tmp_path, chunk_size=3, reporter=rec
    )
    assert STATE.embedded == 5 and result.resumed_rows == 6 and result.computed_rows == 5
    assert result.features is not None and torch.equal(result.features, reference)
    assert any(c[3].get("resumed") == 6 for c in rec.calls)


def test_shards_fill_one_cache_and_the_last_assembles(tmp_path: Path) -> None:
    registry, domain, cfg = registry_with_counting(), _domain(), CountingConfig()
    reference = compute_features(cfg, registry, domain, "item", cache_root=tmp_path / "ref")
    STATE.embedded = 0
    parts = []
    for k in (2, 1, 3):
        parts.append(
            encode_features(
                cfg,
                registry,
                domain,
                "item",
                cache_root=tmp_path,
                chunk_size=2,
                shard=Shard(k, 3),
            )
        )
    assert STATE.embedded == 11  # each row encoded once across the shards
    assert parts[0].features is None and parts[0].missing_chunks == 4
    assert parts[1].features is None and parts[1].missing_chunks == 2
    assert parts[2].features is not None and torch.equal(parts[2].features, reference)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1-3", "a/b", "1/0"])
def test_bad_shard_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="shard"):
        Shard.parse(text)


def test_shard_parts_are_contiguous_and_cover_everything() -> None:
    chunks = [(i, i + 1) for i in range(10)]
    got = [c for k in range(1, 5) for c in Shard(k, 4).select(chunks)]
    assert got == chunks


def test_whole_encoder_is_cached_too(tmp_path: Path) -> None:
    registry, domain = registry_with_counting(), _domain()
    cfg = IdEncoderConfig(dim=3)
    first = encode_features(cfg, registry, domain, "user", cache_root=tmp_path)
    second = encode_features(cfg, registry, domain, "user", cache_root=tmp_path)
    assert not first.cached and second.cached
    assert first.features is not None and second.features is not None
    assert torch.equal(first.features, second.features) and first.features.shape == (7, 3)


def test_corrupt_cache_file_is_recomputed(tmp_path: Path) -> None:
    registry, domain, cfg = registry_with_counting(), _domain(), CountingConfig()
    result = encode_features(cfg, registry, domain, "item", cache_root=tmp_path)
    assert result.cache_dir is not None
    for f in result.cache_dir.rglob("*.safetensors"):
        f.write_bytes(b"garbage")
    again = encode_features(cfg, registry, domain, "item", cache_root=tmp_path)
    assert not again.cached and again.features is not None
    assert result.features is not None and torch.equal(again.features, result.features)
