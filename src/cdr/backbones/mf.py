"""``mf``: matrix factorisation (MF-BPR baseline): LightGCN with zero propagation layers.

Scores are ``e_u . e_i`` of free embeddings; users/items unseen in training get the mean
seen embedding (they cannot use their new edges without retraining).
"""

from __future__ import annotations

import attrs

from cdr.backbones.lightgcn import LightGCNBackbone
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import positive


@attrs.frozen
class MFConfig(BackboneConfig):
    """init_std: N(0, std) embedding init."""

    kind: str = "mf"
    init_std: float = attrs.field(default=0.1, validator=positive)


def _build(config: MFConfig, ctx: BuildContext) -> LightGCNBackbone:
    return LightGCNBackbone(
        ctx.num_users,
        ctx.num_items,
        ctx.dim,
        num_layers=0,
        init_std=config.init_std,
        seed=ctx.seed,
        device=ctx.device,
    )


component = Component(
    "mf", "backbones", MFConfig, _build, "matrix factorisation (MF-BPR; unseen: mean embedding)"
)
