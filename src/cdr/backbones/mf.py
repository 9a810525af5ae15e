"""``mf``: matrix factorisation (MF-BPR baseline): LightGCN with zero propagation layers.

Scores are ``e_u . e_i`` of free embeddings; users/items unseen in training get the mean
seen embedding (they cannot use their new edges without retraining).
"""

from __future__ import annotations

import attrs

from cdr.backbones.lightgcn import INITS, LightGCNBackbone
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import non_negative, one_of, positive


@attrs.frozen
class MFConfig(BackboneConfig):
    """init / init_std / reg_weight as LightGCN's (igcn_cf's MF setting: L2 1e-3)."""

    kind: str = "mf"
    init_std: float = attrs.field(default=0.1, validator=positive)
    init: str = attrs.field(default="normal", validator=one_of(INITS))
    reg_weight: float = attrs.field(default=1e-3, validator=non_negative)


def _build(config: MFConfig, ctx: BuildContext) -> LightGCNBackbone:
    return LightGCNBackbone(
        ctx.num_users,
        ctx.num_items,
        ctx.dim,
        num_layers=0,
        init_std=config.init_std,
        init=config.init,
        reg_weight=config.reg_weight,
        seed=ctx.seed,
        device=ctx.device,
    )


component = Component(
    "mf", "backbones", MFConfig, _build, "matrix factorisation (MF-BPR; unseen: mean embedding)"
)
