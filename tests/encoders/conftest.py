"""Fixtures: tiny randomly initialised transformers (text LM, ViT) saved as local folders,
and a domain with procedurally drawn images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from PIL import Image
from support import tiny_domain

from cdr.data.records import Domain

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = [
    "summarize",
    "the",
    "key",
    "features",
    "of",
    "this",
    "item",
    "title",
    "description",
    "categories",
    "user",
    "preferences",
    "and",
    "interests",
    "from",
    "their",
    "reviews",
    "liked",
    "books",
    "movies",
    "a",
    "fine",
    "thing",
    "number",
    "item",
    "user",
]


def make_tokenizer(extra: tuple[str, ...] = ()) -> object:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[EOS]", *extra]
    words = sorted({w.lower() for w in WORDS} | {str(i) for i in range(10)} | set(":.,\n"))
    vocab = {t: i for i, t in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token="[EOS]",
        additional_special_tokens=list(extra),
    )


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llm")
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def draw_images(root: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` procedurally drawn RGB images (gradients + a coloured box) of varied sizes."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([x * 255 // w, y * 255 // h, np.full((h, w), 40 * i % 255)], -1)
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.integers(0, 255, 3)
        name = f"img{i}.png"
        Image.fromarray(img.astype(np.uint8)).save(root / name)
        names.append(name)
    return names


@pytest.fixture
def image_domain(tmp_path: Path) -> Domain:
    """5 users, 4 items; item 2 has no image; user 3 interacts with item 2 only."""
    names = draw_images(tmp_path, 4)
    domain = tiny_domain("shop", 5, [0, 1, 1, 2, 3, 0], [0, 1, 2, 3, 2, 1], 4)
    images = (names[0], names[1], None, names[3])
    return attrs.evolve(domain, items=attrs.evolve(domain.items, image=images), root=tmp_path)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaVA (CLIP vision tower + Llama) with its processor."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = tmp_path_factory.mktemp("tiny-vlm")
    tokenizer: Any = make_tokenizer(extra=("<image>",))
    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
            projection_dim=8,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            pad_token_id=0,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
        ),
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )
    processor.save_pretrained(folder)
    return folder
