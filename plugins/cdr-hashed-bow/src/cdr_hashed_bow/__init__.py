"""A hashed bag-of-words text encoder: tokens hashed into ``dim`` buckets, log-scaled counts,
L2-normalised rows. Deterministic (blake2b, not Python's salted ``hash``) and needs no weights.
"""

from __future__ import annotations

import hashlib
import re

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import positive
from cdr.data.records import Domain
from cdr.interfaces import Entity
from cdr.progress import Reporter

_TOKEN = re.compile(r"[a-z0-9]+")


@attrs.frozen
class HashedBowConfig(EncoderConfig):
    kind: str = "hashed-bow"
    dim: int = attrs.field(default=256, validator=positive)


def _bucket(token: str, dim: int) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little") % dim


class HashedBowEncoder:
    def __init__(self, dim: int) -> None:
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: list[str]) -> Tensor:
        """texts [N] -> [N, dim]."""
        rows, cols = [], []
        for i, text in enumerate(texts):
            for token in _TOKEN.findall(text.lower()):
                rows.append(i)
                cols.append(_bucket(token, self._dim))
        counts = torch.zeros(len(texts), self._dim)
        if rows:
            index = torch.tensor([rows, cols])
            counts.index_put_((index[0], index[1]), torch.ones(len(rows)), accumulate=True)
        features = torch.log1p(counts)
        return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def encode(self, domain: Domain, entity: Entity, reporter: Reporter | None = None) -> Tensor:
        if entity == "item":
            items = domain.items
            texts = [
                " ".join((items.title[i], items.description[i], *items.categories[i]))
                for i in range(len(items))
            ]
            return self.embed(texts)
        num_users = domain.num_users
        reviews = domain.reviews or ("",) * len(domain.interactions)
        texts = [""] * num_users
        for user, review in zip(domain.interactions.user.tolist(), reviews, strict=True):
            texts[user] += " " + review
        return self.embed(texts)


def _build(config: HashedBowConfig, ctx: BuildContext) -> HashedBowEncoder:
    return HashedBowEncoder(config.dim)


component = Component(
    "hashed-bow", "encoders", HashedBowConfig, _build, "hashed bag-of-words text (example plugin)"
)
