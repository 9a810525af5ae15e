from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.encoders.llm import LlmConfig, LlmEncoder
from cdr.encoders.pooling import last_token, masked_mean, pool


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_masked_mean_ignores_padding(lengths: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    t = max(lengths)
    hidden = torch.randn(len(lengths), t, 3, generator=g)
    mask = (torch.arange(t) < torch.tensor(lengths)[:, None]).long()
    garbage = hidden.masked_fill(mask[..., None] == 0, 1e6)  # padding values must not matter
    expected = torch.stack([hidden[i, :n].mean(0) for i, n in enumerate(lengths)])
    torch.testing.assert_close(masked_mean(garbage, mask), expected)


def test_last_token_left_and_right_padding() -> None:
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token(hidden, left).flatten().tolist() == [3.0, 7.0]


def test_first_last_avg_uses_first_block_and_last_layer() -> None:
    states = tuple(torch.full((1, 2, 1), float(layer)) for layer in range(4))  # emb, 3 blocks
    mask = torch.ones(1, 2, dtype=torch.long)
    assert pool(states, mask, "first_last_avg").item() == 0.5 * (1 + 3)
    assert pool(states, mask, "last_mean").item() == 3.0


def test_llm_first_last_avg_equals_hand_computation(tiny_llm_dir: Path) -> None:
    """MuSiC eq. 1 on a tiny random Llama: batched, padded encoding == per-text by hand."""
    from transformers import AutoModel, AutoTokenizer

    texts = ["the key features of this item", "a fine thing", "user liked books and movies 1 2"]
    encoder = LlmEncoder(LlmConfig(model=str(tiny_llm_dir), batch_size=3), torch.device("cpu"))
    with torch.inference_mode():
        got = encoder.embed(texts)  # one padded batch
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    model = AutoModel.from_pretrained(tiny_llm_dir).eval()
    expected = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids  # no padding
        with torch.no_grad():
            hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert len(hs) == 4  # embeddings + 3 blocks
        first, last = hs[1][0], hs[3][0]  # [n, H]
        expected.append(0.5 * (first.sum(0) / len(first) + last.sum(0) / len(last)))
    assert got.shape == (3, encoder.dim) == (3, 16)
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=1e-4)
