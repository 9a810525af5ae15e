"""Evaluation protocols: a split kind and the list of pipeline stages that run on it.

A protocol is registered under the entry-point group ``cdr.protocols`` like a component
(``cold-start``, ``inductive``, ``composed-cold-start``, ``composed-inductive`` are
built in), so a plugin adds one without touching the core. ``split.kind`` selects the
protocols that use that split; among them the one whose component requirements the
experiment meets runs (``cdr.composition.plan``).

A stage is a function ``(RunContext, RunState) -> RunState`` that declares the state
fields it ``needs`` and ``gives``; a protocol checks when it is defined that every stage's
needs are given by the stages before it, so a misordered stage list fails at import, not
deep inside a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from cdr.data.records import CrossDomainDataset

#: whether a protocol needs a component of a slot ("yes"), refuses one ("no") or takes both
Need = Literal["yes", "no", "any"]


@attrs.frozen
class StageSpec:
    """A named stage: ``run(ctx, state) -> state``; ``needs`` / ``gives``: RunState fields."""

    name: str
    run: Callable[[Any, Any], Any]
    needs: tuple[str, ...] = ()
    gives: tuple[str, ...] = ()


@attrs.frozen
class ProtocolSpec:
    """A split kind and its stages.

    split_kind: the ``split.kind`` value that selects it; split: ``(dataset, split config)
    -> split`` (given to the first stage as ``state.split``); generator / backbone: whether
    the protocol needs, refuses or accepts a component in that slot; stages run in order;
    masked_at_validation / masked_at_test: the edge sets ranked users have masked
    ("train", "validation", "E_new"), recorded in every run's ``protocol.json``.
    """

    name: str
    split_kind: str
    split: Callable[[CrossDomainDataset, Any], Any]
    generator: Need
    backbone: Need
    stages: tuple[StageSpec, ...]
    summary: str = ""
    masked_at_validation: tuple[str, ...] = ()
    masked_at_test: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        given = {"split"}
        for stage in self.stages:
            missing = [n for n in stage.needs if n not in given]
            if missing:
                raise ValueError(
                    f"protocol {self.name!r}: stage {stage.name!r} needs {', '.join(missing)}, "
                    "which no earlier stage gives"
                )
            given.update(stage.gives)

    def describe(self) -> dict[str, Any]:
        """The protocol as plain data (for ``protocol.json``)."""
        return {
            "protocol": self.name,
            "split_kind": self.split_kind,
            "stages": [stage.name for stage in self.stages],
            "masked_at_validation": list(self.masked_at_validation),
            "masked_at_test": list(self.masked_at_test),
        }

    def accepts(self, generator: bool, backbone: bool) -> bool:
        """Whether an experiment with (or without) a generator / backbone fits."""
        return _fits(self.generator, generator) and _fits(self.backbone, backbone)


def _fits(need: Need, present: bool) -> bool:
    return need == "any" or (need == "yes") == present
