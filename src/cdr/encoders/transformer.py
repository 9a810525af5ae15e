"""A Hugging Face text transformer loaded lazily, offline, on a device, in a dtype.

Shared by the ``plm`` and ``llm`` encoders: tokenise a batch (padding, truncation), run the
base model (no LM head: its vocabulary-sized logits are not needed) and return the per-layer
hidden states with the attention mask.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cdr.encoders.weights import hf_load, offline

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA devices that support it (else fp16), float32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    dtype: torch.dtype = getattr(torch, name)
    return dtype


class LazyTextModel:
    """Tokenizer + base model of ``source()`` (called on first use), held for reuse."""

    def __init__(
        self,
        source: Callable[[], Path | str],
        what: str,
        device: torch.device,
        dtype: str = "auto",
        max_length: int = 512,
    ) -> None:
        self._source = source
        self.what = what
        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.max_length = max_length
        self._tokenizer: Any = None
        self._model: Any = None
        self._config: Any = None

    @property
    def config(self) -> Any:
        if self._config is None:
            from transformers import AutoConfig

            self._config = hf_load(AutoConfig, self._source(), self.what)
        return self._config

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    def load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer

            offline()
            source = self._source()
            tokenizer = hf_load(AutoTokenizer, source, self.what)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "right"
            tokenizer.truncation_side = "right"
            model = hf_load(AutoModel, source, self.what, dtype=self.dtype)
            self._tokenizer, self._model = tokenizer, model.to(self.device).eval()
        return self._tokenizer, self._model

    @property
    def tokenizer(self) -> Any:
        return self.load()[0]

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=True, max_length=self.max_length).input_ids)

    def hidden_states(self, texts: list[str]) -> tuple[tuple[Tensor, ...], Tensor]:
        """([L+1] of [B, T, H] float32, attention mask [B, T]) for a batch of texts."""
        tokenizer, model = self.load()
        batch = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        )
        return tuple(h.float() for h in out.hidden_states), batch["attention_mask"]
