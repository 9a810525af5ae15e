from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support import tiny_domain

from cdr.encoders.plm import PlmConfig, PlmEncoder


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from encoders.conftest import make_tokenizer
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)  # type: ignore[attr-defined]
    return folder


def test_mean_pooled_unit_rows(tiny_bert_dir: Path) -> None:
    domain = tiny_domain("books", 3, [0, 1], [0, 0], 2)
    enc = PlmEncoder(PlmConfig(model=str(tiny_bert_dir)), torch.device("cpu"))
    items, users = enc.encode(domain, "item"), enc.encode(domain, "user")
    assert items.shape == (2, 8) and users.shape == (3, 8)
    torch.testing.assert_close(items.norm(dim=1), torch.ones(2))
    assert (users[2] == 0).all()


@pytest.mark.models
def test_default_minilm_is_384_d_and_semantic() -> None:
    enc = PlmEncoder(PlmConfig(), torch.device("cpu"))
    with torch.inference_mode():
        a, b, c = enc.embed(
            [
                "a thrilling space adventure novel",
                "a science fiction book",
                "stainless steel kitchen knife",
            ]
        )
    assert a.shape == (384,)
    assert float(a @ b) > float(a @ c) + 0.1
