"""``mllm``: hidden-state features of a vision-language model, MuSiC section 3.2.

For users with local VLM weights (MuSiC uses MiniCPM-Llama3-V 2.5): the item's image and a
prompt over its title, description and categories go through the model's processor and one
forward pass; the language model's hidden states are pooled as in ``llm`` (default
first-last-avg, MuSiC eq. 1; image tokens count as tokens). Items without an image, and
users (review text only, as in MuSiC), take the text-only path of the same model. Loaded
with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (any transformers VLM whose
processor accepts ``text=`` and ``images=``). No weights are packaged: ``model`` must name a
local folder (or a cached HF id); the shipped stand-in is ``fusion``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import one_of, positive
from cdr.data.records import Domain
from cdr.encoders.batching import Plan, RowEncoder
from cdr.encoders.image import ImageInput, image_inputs
from cdr.encoders.llm import ITEM_PROMPT, USER_PROMPT
from cdr.encoders.pooling import POOLINGS, pool
from cdr.encoders.text import ITEM_FIELDS, USER_FIELDS, check_template, item_texts, user_texts
from cdr.encoders.transformer import DTYPES, resolve_dtype
from cdr.encoders.weights import hf_load, local_model
from cdr.errors import ConfigError, DataError
from cdr.interfaces import Entity


@attrs.frozen
class MllmConfig(EncoderConfig):
    kind: str = "mllm"
    model: str = ""
    item_prompt: str = ITEM_PROMPT
    user_prompt: str = USER_PROMPT
    pooling: str = attrs.field(default="first_last_avg", validator=one_of(POOLINGS[:3]))
    batch_size: int = attrs.field(default=4, validator=positive)
    max_reviews: int = attrs.field(default=10, validator=positive)
    review_chars: int = attrs.field(default=500, validator=positive)
    description_chars: int = attrs.field(default=1000, validator=positive)
    dtype: str = attrs.field(default="auto", validator=one_of(DTYPES))

    def __attrs_post_init__(self) -> None:
        check_template(self.item_prompt, ITEM_FIELDS, "item_prompt")
        check_template(self.user_prompt, USER_FIELDS, "user_prompt")


@attrs.frozen
class MllmInput:
    """One row: a prompt, with the item's image or without (users, imageless items)."""

    prompt: str
    image: ImageInput | None = None


class MllmEncoder(RowEncoder):
    def __init__(self, config: MllmConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.dtype = resolve_dtype(config.dtype, device)
        self.batch_size = config.batch_size
        self._processor: Any = None
        self._model: Any = None

    def _source(self) -> Path | str:
        return local_model(self.config.model, "mllm model")

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            source = self._source()
            self._processor = hf_load(AutoProcessor, source, "mllm model")
            model = hf_load(AutoModelForImageTextToText, source, "mllm model", dtype=self.dtype)
            self._model = model.to(self.device).eval()
        return self._processor, self._model

    @property
    def dim(self) -> int:
        from transformers import AutoConfig

        config = hf_load(AutoConfig, self._source(), "mllm model")
        text = getattr(config, "text_config", None) or config
        return int(text.hidden_size)

    def cost(self, item: Any) -> int:
        return len(item.prompt) + (1_000_000 if item.image is not None else 0)

    def plan(self, domain: Domain, entity: Entity) -> Plan:
        c = self.config
        if entity == "user":
            texts = user_texts(domain, c.user_prompt, c.max_reviews, c.review_chars)
            return Plan([None if t is None else MllmInput(t) for t in texts])
        items = domain.items
        cut = attrs.evolve(
            items, description=tuple(d[: c.description_chars] for d in items.description)
        )
        texts = item_texts(attrs.evolve(domain, items=cut), c.item_prompt)
        rows: list[MllmInput | None] = []
        for text, image in zip(texts, image_inputs(domain), strict=True):
            rows.append(None if text is None and image is None else MllmInput(text or "", image))
        return Plan(rows)

    def _text(self, processor: Any, row: MllmInput) -> str:
        content: list[dict[str, str]] = [{"type": "text", "text": row.prompt}]
        if row.image is not None:
            content.insert(0, {"type": "image"})
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            text: str = processor.apply_chat_template(messages, add_generation_prompt=True)
            return text
        token = getattr(processor, "image_token", "<image>")
        return f"{token}\n{row.prompt}" if row.image is not None else row.prompt

    def _forward(self, rows: list[MllmInput]) -> Tensor:
        from PIL import Image

        processor, model = self._load()
        texts = [self._text(processor, r) for r in rows]
        images = None
        files = [r.image.path for r in rows if r.image is not None]  # groups are homogeneous
        if files:
            images = []
            for path in files:
                try:
                    with Image.open(path) as img:
                        images.append(img.convert("RGB"))
                except OSError as exc:
                    raise DataError(f"{path}: not a readable image ({exc})") from exc
        inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = model(**inputs, output_hidden_states=True)
        hidden = tuple(h.float() for h in out.hidden_states)
        return pool(hidden, inputs["attention_mask"], self.config.pooling)

    def embed(self, batch: list[Any]) -> Tensor:
        out = torch.zeros(len(batch), self.dim)
        for with_image in (True, False):  # one processor call per kind of input
            index = [i for i, r in enumerate(batch) if (r.image is not None) == with_image]
            if index:
                out[torch.tensor(index)] = self._forward([batch[i] for i in index]).cpu()
        return out


def _build(config: MllmConfig, ctx: BuildContext) -> MllmEncoder:
    if not config.model:
        raise ConfigError(
            "model: mllm needs local vision-language weights (none are packaged); "
            "set model to a folder, or use the 'fusion' encoder"
        )
    return MllmEncoder(config, ctx.device)


component = Component(
    "mllm",
    "encoders",
    MllmConfig,
    _build,
    "vision-language model hidden states, first-last-avg (local weights, e.g. MiniCPM-V)",
)
