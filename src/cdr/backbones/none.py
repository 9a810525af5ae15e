"""``none``: no graph backbone (representations come from encoders + MLP, as in MuSiC)."""

from __future__ import annotations

from typing import Any

import attrs

from cdr.components import BackboneConfig, BuildContext, Component


@attrs.frozen
class NoBackboneConfig(BackboneConfig):
    kind: str = "none"


def _build(config: NoBackboneConfig, ctx: BuildContext) -> Any:
    return None


component = Component("none", "backbones", NoBackboneConfig, _build, "no graph backbone")
