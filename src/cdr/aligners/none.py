"""``none``: no alignment loss between the domains."""

from __future__ import annotations

from typing import Any

import attrs

from cdr.components import AlignerConfig, BuildContext, Component


@attrs.frozen
class NoAlignerConfig(AlignerConfig):
    kind: str = "none"


def _build(config: NoAlignerConfig, ctx: BuildContext) -> Any:
    return None


component = Component("none", "aligners", NoAlignerConfig, _build, "no cross-domain aligner")
