from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import tiny_domain

from cdr.encoders.features import compute_features
from cdr.encoders.llm import LlmConfig, LlmEncoder
from cdr.errors import ConfigError, ModelFileError
from cdr.registry import Registry


def test_items_and_users_through_the_cache(tiny_llm_dir: Path, tmp_path: Path) -> None:
    domain = tiny_domain("books", 4, [0, 0, 2], [0, 1, 1], 3)
    cfg = LlmConfig(model=str(tiny_llm_dir), batch_size=2)
    items = compute_features(cfg, Registry(), domain, "item", cache_root=tmp_path)
    users = compute_features(cfg, Registry(), domain, "user", cache_root=tmp_path)
    assert items.shape == (3, 16) and users.shape == (4, 16)
    assert (users[[1, 3]] == 0).all() and (users[[0, 2]] != 0).any(dim=1).all()
    direct = LlmEncoder(cfg, torch.device("cpu")).encode(domain, "item")
    torch.testing.assert_close(items, direct, atol=1e-5, rtol=1e-4)  # batching-invariant


@pytest.mark.parametrize("pooling", ["last_mean", "last_token"])
def test_other_poolings_differ_from_first_last_avg(tiny_llm_dir: Path, pooling: str) -> None:
    texts = ["a fine thing number 1", "the item"]
    base = LlmEncoder(LlmConfig(model=str(tiny_llm_dir)), torch.device("cpu"))
    other = LlmEncoder(LlmConfig(model=str(tiny_llm_dir), pooling=pooling), torch.device("cpu"))
    with torch.inference_mode():
        assert not torch.allclose(base.embed(texts), other.embed(texts))


def test_prompt_is_part_of_the_plan(tiny_llm_dir: Path) -> None:
    domain = tiny_domain("books", 2, [0], [0], 2)
    cfg = LlmConfig(model=str(tiny_llm_dir), item_prompt="item: {title}")
    plan = LlmEncoder(cfg, torch.device("cpu")).plan(domain, "item")
    assert list(plan.inputs) == ["item: books item 0", "item: books item 1"]


def test_bad_prompt_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="user_prompt"):
        LlmConfig(user_prompt="{reviews} {age}")


def test_missing_model_says_which_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    enc = LlmEncoder(LlmConfig(model=str(missing)), torch.device("cpu"))
    with pytest.raises(ModelFileError, match="nope"):
        _ = enc.dim
    enc = LlmEncoder(LlmConfig(model="some-org/not-cached-model"), torch.device("cpu"))
    with pytest.raises(ModelFileError, match="not-cached-model") as info:
        _ = enc.dim
    assert info.value.hint is not None and "model" in info.value.hint


@pytest.mark.models
def test_default_smollm2_features() -> None:
    enc = LlmEncoder(LlmConfig(), torch.device("cpu"))
    with torch.inference_mode():
        out = enc.embed(["Title: Dune\nKey features:", "Title: Kitchen knife\nKey features:"])
    assert out.shape == (2, 576) == (2, enc.dim) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
