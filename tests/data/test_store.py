from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cdr.data.filters import FilterConfig
from cdr.data.store import (
    build_dataset,
    dataset_dir,
    load_dataset,
    read_dataset,
    read_manifest,
    save_dataset,
)
from cdr.data.synthetic import SyntheticConfig, SyntheticProvider
from cdr.errors import DataError
from cdr.registry import Registry

TINY = SyntheticConfig(size="tiny")


def test_build_then_reload_without_the_provider(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    built = load_dataset(TINY, registry, cache_root=tmp_path)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("raw data re-generated")

    monkeypatch.setattr(SyntheticProvider, "load", fail)
    again = load_dataset(TINY, registry, cache_root=tmp_path)
    for role in ("source", "target"):
        a, b = getattr(built, role), getattr(again, role)
        for field in ("user", "item", "rating", "timestamp"):
            assert torch.equal(getattr(a.interactions, field), getattr(b.interactions, field))
        assert a.items.title == b.items.title and a.items.categories == b.items.categories
        assert a.reviews == b.reviews and a.item_ids == b.item_ids
        assert b.root is not None and (b.root / str(b.items.image[0])).is_file()
    assert built.user_ids == again.user_ids


def test_manifest_records_counts_source_config_and_hash(tmp_path: Path) -> None:
    path = build_dataset(TINY, Registry(), cache_root=tmp_path)
    manifest = read_manifest(path)
    ds = read_dataset(path)
    assert manifest["counts"]["overlapping_users"] == len(ds.overlapping_users())
    assert manifest["counts"]["target"]["interactions"] == len(ds.target.interactions)
    assert manifest["config"]["size"] == "tiny" and manifest["config"]["kind"] == "synthetic"
    assert "seed 0" in manifest["source"]
    assert len(manifest["content_hash"]) == 64
    assert manifest["domains"]["source"]["root"] == "source"  # relative: the dir can move


def test_filters_are_applied_and_reported(tmp_path: Path) -> None:
    cfg = SyntheticConfig(size="tiny", images=False, filters=FilterConfig(min_rating=4.0))
    path = build_dataset(cfg, Registry(), cache_root=tmp_path)
    manifest = read_manifest(path)
    ds = read_dataset(path)
    assert [r["filter"] for r in manifest["filters"]] == ["rating >= 4 (implicit)"] * 2
    assert bool((ds.target.interactions.rating == 1.0).all())
    assert manifest["filters"][1]["removed_interactions"] > 0


def test_a_failing_build_leaves_nothing_behind(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, reporter: Any = None, *, workdir: Path | None = None) -> None:
        assert workdir is not None
        (workdir / "half-written").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(SyntheticProvider, "load", broken)
    with pytest.raises(RuntimeError):
        build_dataset(TINY, Registry(), cache_root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_different_configs_get_different_directories(tmp_path: Path) -> None:
    assert dataset_dir(TINY, tmp_path) != dataset_dir(SyntheticConfig(size="tiny", seed=1),
                                                      tmp_path)
    assert dataset_dir(TINY, tmp_path) == dataset_dir(SyntheticConfig(size="tiny"), tmp_path)


def test_save_refuses_to_overwrite(tmp_path: Path, tiny_synthetic: Any) -> None:
    save_dataset(tiny_synthetic, tmp_path / "d")
    with pytest.raises(DataError, match="already exists"):
        save_dataset(tiny_synthetic, tmp_path / "d")


def test_unusable_directories_are_named_errors(tmp_path: Path, tiny_synthetic: Any) -> None:
    with pytest.raises(DataError, match=r"manifest\.json: missing"):
        read_dataset(tmp_path)
    path = save_dataset(tiny_synthetic, tmp_path / "d")
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"manifest\.json: not valid JSON"):
        read_dataset(path)
    path = save_dataset(tiny_synthetic, tmp_path / "e")
    pq.write_table(pa.table({"user_id": [1, 2]}), path / "users.parquet")
    with pytest.raises(DataError, match=r"users.parquet: schema"):
        read_dataset(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="version 99"):
        read_dataset(path)


def test_same_config_builds_byte_identical_tables(tmp_path: Path) -> None:
    cfg = SyntheticConfig(size="tiny", images=False)
    a = build_dataset(cfg, Registry(), cache_root=tmp_path / "a")
    b = build_dataset(cfg, Registry(), cache_root=tmp_path / "b")
    assert read_manifest(a)["content_hash"] == read_manifest(b)["content_hash"]
    for table in ("users.parquet", "target/interactions.parquet", "source/items.parquet"):
        assert (a / table).read_bytes() == (b / table).read_bytes()
