"""Named implementations per interface, discovered through entry points.

``importlib.metadata.entry_points(group="cdr.<group>")`` is the whole mechanism: built-ins
and third-party plugins register the same way. Names are read without importing anything;
only a selected component is loaded. A plugin that fails to import is reported with its
distribution name and leaves the rest working. Evaluation protocols (``cdr.protocols``,
``cdr.protocols.ProtocolSpec`` objects) are discovered the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points

import attrs

from cdr.components import GROUPS, Component
from cdr.errors import PluginError, UnknownComponentError
from cdr.protocols import ProtocolSpec

BUILTIN_DIST = "cdr"
PROTOCOLS = "protocols"


@attrs.frozen
class Origin:
    """Where a component comes from: the distribution that registers it."""

    name: str
    distribution: str
    value: str

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DIST


def _dist_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "<unknown>"


class Registry:
    """Entry points grouped by interface; loads and checks components on demand."""

    def __init__(self, eps: Iterable[EntryPoint] | None = None) -> None:
        self._eps: dict[str, dict[str, EntryPoint]] = {g: {} for g in GROUPS}
        self._cache: dict[tuple[str, str], Component] = {}
        self._protocols: dict[str, EntryPoint] = {
            ep.name: ep for ep in entry_points(group=f"cdr.{PROTOCOLS}")
        }
        self._protocol_cache: dict[str, ProtocolSpec] = {}
        self.conflicts: list[str] = []
        found = eps if eps is not None else self._discover()
        for ep in found:
            group = ep.group.removeprefix("cdr.")
            if group == PROTOCOLS:
                self._protocols[ep.name] = ep
                continue
            if group not in self._eps:
                continue
            known = self._eps[group].get(ep.name)
            if known is not None and _dist_name(known) != _dist_name(ep):
                # Two distributions claim one name: neither silently wins; using it is an error.
                self.conflicts.append(
                    f"{group} {ep.name!r} is registered by both {_dist_name(known)} "
                    f"and {_dist_name(ep)}"
                )
            self._eps[group].setdefault(ep.name, ep)

    @staticmethod
    def _discover() -> list[EntryPoint]:
        return [ep for g in GROUPS for ep in entry_points(group=f"cdr.{g}")]

    def names(self, group: str) -> list[str]:
        return sorted(self._eps[self._group(group)])

    def origins(self, group: str) -> list[Origin]:
        return [
            Origin(name, _dist_name(ep), ep.value)
            for name, ep in sorted(self._eps[self._group(group)].items())
        ]

    def get(self, group: str, name: str) -> Component:
        """Load the component ``name`` of ``group``; a clear error if unknown or broken."""
        group = self._group(group)
        key = (group, name)
        if key in self._cache:
            return self._cache[key]
        clash = [c for c in self.conflicts if c.startswith(f"{group} {name!r} ")]
        if clash:
            raise PluginError(clash[0], hint="uninstall one of the two distributions")
        ep = self._eps[group].get(name)
        if ep is None:
            known = ", ".join(self.names(group)) or "(none)"
            raise UnknownComponentError(
                f"unknown {group[:-1]} {name!r}; known: {known}",
                hint="`cdr components` lists every registered implementation",
            )
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            raise PluginError(
                f"plugin {_dist_name(ep)} failed to load {group[:-1]} {name!r} ({ep.value}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(obj, Component) or obj.group != group:
            raise PluginError(
                f"entry point {name!r} of {_dist_name(ep)} ({ep.value}) is not a "
                f"cdr.components.Component of group {group!r}"
            )
        self._cache[key] = obj
        return obj

    def protocol_names(self) -> list[str]:
        return sorted(self._protocols)

    def protocols(self) -> list[ProtocolSpec]:
        """Every registered protocol, loaded (a broken plugin's is a PluginError)."""
        return [self.protocol(name) for name in self.protocol_names()]

    def protocol(self, name: str) -> ProtocolSpec:
        if name in self._protocol_cache:
            return self._protocol_cache[name]
        ep = self._protocols.get(name)
        if ep is None:
            known = ", ".join(self.protocol_names()) or "(none)"
            raise UnknownComponentError(f"unknown protocol {name!r}; known: {known}")
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            raise PluginError(
                f"plugin {_dist_name(ep)} failed to load protocol {name!r} ({ep.value}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(obj, ProtocolSpec):
            raise PluginError(
                f"entry point {name!r} of {_dist_name(ep)} ({ep.value}) is not a "
                "cdr.protocols.ProtocolSpec"
            )
        self._protocol_cache[name] = obj
        return obj

    @staticmethod
    def _group(group: str) -> str:
        group = group.removeprefix("cdr.")
        if group not in GROUPS:
            raise UnknownComponentError(
                f"unknown component group {group!r}; known: {', '.join(GROUPS)}"
            )
        return group
