"""What an entry point provides: a ``Component`` spec (name, config class, builder).

A built-in or plugin module exposes ``component = Component(...)`` and registers it in its
distribution's pyproject under one of the groups in ``GROUPS``. ``build(config, ctx)`` makes
the implementation for a config and the data-dependent sizes in ``BuildContext``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
import torch

from cdr.interfaces import Aligner, DatasetProvider, Encoder, Generator, GraphBackbone, Scorer

#: entry-point group suffix -> the interface its components implement.
GROUPS: dict[str, type] = {
    "encoders": Encoder,
    "generators": Generator,
    "backbones": GraphBackbone,
    "aligners": Aligner,
    "scorers": Scorer,
    "datasets": DatasetProvider,
}

#: groups in which the name "none" means "no component of this kind".
OPTIONAL_GROUPS = ("generators", "backbones", "aligners")


class ComponentConfig:
    """Base of every component config: an ``@attrs.frozen`` class with a ``kind`` field
    whose default is the registered name. Subclass the per-group base below."""

    kind: str


class EncoderConfig(ComponentConfig):
    """Config of an Encoder."""


class GeneratorConfig(ComponentConfig):
    """Config of a Generator."""


class BackboneConfig(ComponentConfig):
    """Config of a GraphBackbone."""


class AlignerConfig(ComponentConfig):
    """Config of an Aligner."""


class ScorerConfig(ComponentConfig):
    """Config of a Scorer."""


class DatasetConfig(ComponentConfig):
    """Config of a DatasetProvider."""


CONFIG_BASES: dict[str, type[ComponentConfig]] = {
    "encoders": EncoderConfig,
    "generators": GeneratorConfig,
    "backbones": BackboneConfig,
    "aligners": AlignerConfig,
    "scorers": ScorerConfig,
    "datasets": DatasetConfig,
}


@attrs.frozen
class BuildContext:
    """Data-dependent sizes a component needs at construction.

    in_dim: width of the inputs it receives (features or auxiliary vectors);
    dim: width of the representations it produces; num_users / num_items: sizes of the
    domain it is built for (0 where irrelevant).
    """

    dim: int = 32
    in_dim: int = 32
    num_users: int = 0
    num_items: int = 0
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    seed: int = 0


C = TypeVar("C", bound=ComponentConfig)
#: what a component builds: an implementation of its group's interface (or None)
T = TypeVar("T")


@attrs.frozen
class Component(Generic[C, T]):
    """A named implementation: its config class and how to build it.

    ``build(config, ctx)`` returns the implementation (``None`` for the "none" components);
    ``Component[DDPMConfig, DiffusionGenerator]`` types both ends for the type checker.
    """

    name: str
    group: str
    config_cls: type[C]
    build: Callable[[C, BuildContext], T]
    summary: str = ""

    def __attrs_post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"component {self.name!r}: unknown group {self.group!r}")
        if not issubclass(self.config_cls, CONFIG_BASES[self.group]):
            base = CONFIG_BASES[self.group].__name__
            raise ValueError(f"component {self.name!r}: config class must subclass {base}")
