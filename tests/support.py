"""Test helpers: tiny in-memory datasets and a registry with test-only components."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import torch

from cdr.components import GROUPS, BuildContext, Component, DatasetConfig, EncoderConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions, ItemContent
from cdr.registry import Registry


def tiny_domain(
    name: str, num_users: int, users: list[int], items: list[int], num_items: int
) -> Domain:
    inter = Interactions(
        torch.tensor(users),
        torch.tensor(items),
        torch.ones(len(users)),
        torch.arange(len(users)),
    )
    content = ItemContent(
        title=tuple(f"{name} item {i}" for i in range(num_items)),
        description=tuple(f"a fine {name} thing number {i}" for i in range(num_items)),
        categories=tuple((name,) for _ in range(num_items)),
        image=(None,) * num_items,
    )
    reviews = tuple(f"user {u} liked {name} {i}" for u, i in zip(users, items, strict=True))
    return Domain(name, num_users, tuple(str(i) for i in range(num_items)), inter, content, reviews)


def tiny_dataset() -> CrossDomainDataset:
    """4 users: 0, 1 overlap; 2 source-only; 3 side (target-only)."""
    source = tiny_domain("books", 4, [0, 0, 1, 2], [0, 1, 1, 2], 3)
    target = tiny_domain("movies", 4, [0, 1, 3, 3], [0, 1, 1, 2], 3)
    return CrossDomainDataset("tiny", ("a", "b", "c", "d"), source, target)


@attrs.frozen
class TinyDatasetConfig(DatasetConfig):
    kind: str = "tiny"
    size: int = 4


class TinyProvider:
    def load(self, reporter: Any = None) -> CrossDomainDataset:
        return tiny_dataset()


def _build_tiny(config: TinyDatasetConfig, ctx: BuildContext) -> TinyProvider:
    return TinyProvider()


tiny_component = Component("tiny", "datasets", TinyDatasetConfig, _build_tiny, "test dataset")


@attrs.frozen
class ConstantEncoderConfig(EncoderConfig):
    kind: str = "constant"
    dim: int = 3


class ConstantEncoder:
    """Ones features: a test-only encoder so config tests need no real one."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, domain: Domain, entity: Any, reporter: Any = None) -> torch.Tensor:
        rows = domain.num_items if entity == "item" else domain.num_users
        return torch.ones(rows, self.dim)


constant_component = Component(
    "constant",
    "encoders",
    ConstantEncoderConfig,
    lambda c, ctx: ConstantEncoder(c.dim),
    "test encoder",
)


def registry_with_fakes() -> Registry:
    """The installed components plus the test-only ``tiny`` dataset and ``constant`` encoder."""
    installed = [ep for g in GROUPS for ep in entry_points(group=f"cdr.{g}")]
    fakes = [
        EntryPoint("tiny", "support:tiny_component", "cdr.datasets"),
        EntryPoint("constant", "support:constant_component", "cdr.encoders"),
    ]
    return Registry([*installed, *fakes])


CALLS: list[str] = []


def fake_pipeline(
    cfg: Any, registry: Registry, run_dir: Any, reporter: Any = None
) -> dict[str, float]:
    """A pipeline stand-in: metrics derived from the config, so tests can check plumbing."""
    import json

    CALLS.append(str(run_dir))
    metrics = {"ndcg@20": 0.1 + cfg.seed / 100, "steps": float(getattr(cfg.generator, "steps", 0))}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


#: config overrides selecting the test-only components (no real data or weights needed)
FAKE_OVERRIDES = (
    "dataset.kind=tiny",
    "encoders.item.kind=constant",
    "encoders.user.kind=constant",
    "generator.kind=identity",
    "backbone.kind=none",
    "aligner.kind=none",
    "scorer.kind=dot",
)
