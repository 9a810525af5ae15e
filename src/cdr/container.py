"""The composition root: builds the object graph from an ExperimentConfig.

One ``providers.Selector`` per interface, keyed by the config's ``kind``; each option is a
``providers.Factory`` that loads the registered component lazily (only the selected plugin
is imported) and builds it from its config section and a ``BuildContext``::

    container = build_container(cfg, registry)
    generator = container.generator(ctx=BuildContext(dim=32, in_dim=32))
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from cdr.components import BuildContext, ComponentConfig
from cdr.config.experiment import ExperimentConfig
from cdr.registry import Registry


class Container(containers.DeclarativeContainer):
    """Providers for the experiment; the component selectors are added per registry."""

    config = providers.Dependency(instance_of=ExperimentConfig)
    registry = providers.Dependency(instance_of=Registry)


class _Build:
    """Factory target: load ``group/name`` from the registry and build it."""

    def __init__(self, registry: Registry, group: str, name: str) -> None:
        self.registry, self.group, self.name = registry, group, name

    def __call__(self, config: ComponentConfig, ctx: BuildContext | None = None) -> Any:
        component = self.registry.get(self.group, self.name)
        return component.build(config, ctx if ctx is not None else BuildContext())


# container attribute -> (registry group, path of its config inside ExperimentConfig)
SLOTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dataset": ("datasets", ("dataset",)),
    "item_encoder": ("encoders", ("encoders", "item")),
    "user_encoder": ("encoders", ("encoders", "user")),
    "generator": ("generators", ("generator",)),
    "backbone": ("backbones", ("backbone",)),
    "aligner": ("aligners", ("aligner",)),
    "scorer": ("scorers", ("scorer",)),
}


def build_container(cfg: ExperimentConfig, registry: Registry) -> Container:
    """A container whose selectors cover every registered name (plugins included)."""
    container = Container(config=providers.Object(cfg), registry=providers.Object(registry))
    cfg_provider = providers.Object(cfg)
    selectors: dict[str, providers.Provider[Any]] = {}
    for slot, (group, path) in SLOTS.items():
        section: Any = cfg_provider.provided
        for attr in path:
            section = getattr(section, attr)
        options = {
            name: providers.Factory(_Build(registry, group, name), config=section)
            for name in registry.names(group)
        }
        selectors[slot] = providers.Selector(section.kind, **options)
    container.set_providers(**selectors)
    return container
