"""Test-only encoders for the cache tests: a row encoder that counts what it embeds and can
be told to fail mid-run (to simulate an interruption)."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import torch
from torch import Tensor

from cdr.components import GROUPS, Component, EncoderConfig
from cdr.data.records import Domain
from cdr.encoders.batching import Plan, RowEncoder
from cdr.interfaces import Entity
from cdr.registry import Registry


class Interrupt(Exception):
    """Raised by the counting encoder once ``STATE.fail_after`` rows are embedded."""


@attrs.define
class _State:
    embedded: int = 0
    calls: int = 0
    fail_after: int | None = None


STATE = _State()


@attrs.frozen
class CountingConfig(EncoderConfig):
    kind: str = "counting"
    dim: int = 4
    batch_size: int = 2


class CountingEncoder(RowEncoder):
    """Item titles / users' concatenated reviews -> [len, #vowels, #spaces, hash bucket]."""

    def __init__(self, config: CountingConfig) -> None:
        self.config = config
        self.batch_size = config.batch_size

    @property
    def dim(self) -> int:
        return self.config.dim

    def plan(self, domain: Domain, entity: Entity) -> Plan:
        if entity == "item":
            return Plan(list(domain.items.title))
        texts: list[str | None] = [None] * domain.num_users
        for user, review in zip(
            domain.interactions.user.tolist(), domain.reviews or (), strict=False
        ):
            texts[user] = (texts[user] or "") + review
        return Plan(texts)

    def embed(self, batch: list[Any]) -> Tensor:
        if STATE.fail_after is not None and STATE.embedded + len(batch) > STATE.fail_after:
            raise Interrupt
        STATE.embedded += len(batch)
        STATE.calls += 1
        rows = [
            [len(t), sum(c in "aeiou" for c in t), t.count(" "), sum(map(ord, t)) % 97]
            for t in batch
        ]
        return torch.tensor(rows, dtype=torch.float32)[:, : self.dim]


counting_component = Component(
    "counting", "encoders", CountingConfig, lambda c, ctx: CountingEncoder(c), "test encoder"
)


def registry_with_counting() -> Registry:
    installed = [ep for g in GROUPS for ep in entry_points(group=f"cdr.{g}")]
    fake = EntryPoint("counting", "encoders.encoder_fakes:counting_component", "cdr.encoders")
    return Registry([*installed, fake])
