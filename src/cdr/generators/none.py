"""``none``: no generator (the model has no cross-domain generation step)."""

from __future__ import annotations

from typing import Any

import attrs

from cdr.components import BuildContext, Component, GeneratorConfig


@attrs.frozen
class NoGeneratorConfig(GeneratorConfig):
    kind: str = "none"


def _build(config: NoGeneratorConfig, ctx: BuildContext) -> Any:
    return None


component = Component("none", "generators", NoGeneratorConfig, _build, "no generator")
