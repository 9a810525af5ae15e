from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from cdr.components import GROUPS, Component
from cdr.errors import PluginError, UnknownComponentError
from cdr.registry import Registry


def test_builtins_are_registered_through_entry_points() -> None:
    registry = Registry()
    assert "dot" in registry.names("scorers")
    assert {"none", "identity"} <= set(registry.names("generators"))
    origin = next(o for o in registry.origins("scorers") if o.name == "dot")
    assert origin.builtin


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownComponentError, match=r"unknown scorer 'cosine'; known: .*dot"):
        Registry().get("scorers", "cosine")


def test_unknown_group_is_an_error() -> None:
    with pytest.raises(UnknownComponentError, match="unknown component group"):
        Registry().names("rankers")


def test_broken_plugin_is_reported_and_others_still_load() -> None:
    broken = EntryPoint("broken", "no_such_module_xyz:component", "cdr.scorers")
    good = EntryPoint("dot", "cdr.scorers.dot:component", "cdr.scorers")
    registry = Registry([broken, good])
    with pytest.raises(PluginError, match="failed to load scorer 'broken'"):
        registry.get("scorers", "broken")
    assert isinstance(registry.get("scorers", "dot"), Component)


def test_entry_point_that_is_not_a_component_is_refused() -> None:
    wrong = EntryPoint("weird", "cdr.scorers.dot:DotScorer", "cdr.scorers")
    with pytest.raises(PluginError, match=r"is not a cdr\.components\.Component"):
        Registry([wrong]).get("scorers", "weird")


def test_component_registered_in_the_wrong_group_is_refused() -> None:
    misplaced = EntryPoint("dot", "cdr.scorers.dot:component", "cdr.generators")
    with pytest.raises(PluginError, match="group 'generators'"):
        Registry([misplaced]).get("generators", "dot")


def test_every_group_has_an_interface() -> None:
    assert set(GROUPS) == {"encoders", "generators", "backbones", "aligners", "scorers", "datasets"}
