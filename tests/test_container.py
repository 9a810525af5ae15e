"""Container wiring: every registered component of every slot builds through its Selector."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest
from support import registry_with_fakes

from cdr.components import GROUPS, BuildContext
from cdr.config import EncodersConfig, ExperimentConfig
from cdr.container import SLOTS, build_container
from cdr.errors import ConfigError
from cdr.generators.identity import IdentityConfig
from cdr.interfaces import Generator, Scorer
from cdr.scorers.dot import DotConfig

REGISTRY = registry_with_fakes()
CASES = [(slot, name) for slot, (group, _) in SLOTS.items() for name in REGISTRY.names(group)]


def config_with(slot: str, section: Any) -> ExperimentConfig:
    """An experiment whose ``slot`` is ``section``; the other slots are never called."""
    filler = IdentityConfig()
    fields: dict[str, Any] = dict(
        dataset=filler,
        generator=filler,
        backbone=filler,
        aligner=filler,
        scorer=filler,
        encoders=EncodersConfig(filler, filler),
    )
    if slot == "item_encoder":
        fields["encoders"] = EncodersConfig(section, filler)
    elif slot == "user_encoder":
        fields["encoders"] = EncodersConfig(filler, section)
    else:
        fields[slot] = section
    return ExperimentConfig(**fields)


@pytest.mark.parametrize(("slot", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_selector_builds_every_registered_component(slot: str, name: str) -> None:
    group = SLOTS[slot][0]
    component = REGISTRY.get(group, name)
    container = build_container(config_with(slot, component.config_cls()), REGISTRY)
    ctx = BuildContext(dim=8, in_dim=8, num_users=5, num_items=7)
    try:
        built = getattr(container, slot)(ctx=ctx)
    except ConfigError as exc:
        # a component whose defaults cannot work (e.g. needs local weights) must say so in
        # one line naming its field
        assert "\n" not in str(exc) and re.match(r"^\w+: ", str(exc)), str(exc)
        return
    if name == "none":
        assert built is None
    else:
        assert isinstance(built, GROUPS[group]), f"{name} does not satisfy {GROUPS[group].__name__}"


def test_selector_follows_the_config_kind() -> None:
    cfg = attrs.evolve(config_with("scorer", DotConfig()), generator=IdentityConfig())
    container = build_container(cfg, REGISTRY)
    assert isinstance(container.scorer(), Scorer)
    assert isinstance(container.generator(ctx=BuildContext(dim=4, in_dim=4)), Generator)
    # a Factory: each call builds a new object
    assert container.scorer() is not container.scorer()
