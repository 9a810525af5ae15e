"""Which compositions make sense, and which registered protocol runs each.

``split.kind`` names a split; the registered protocols (``cdr.protocols``) that use it
are candidates, and the one whose needs (a generator? a graph backbone?) the experiment
meets runs. Refused up front (with why) rather than failing deep inside training:
- an aligner without a graph backbone (it couples the backbone's per-domain user reps);
- an inductive split without a graph backbone (unseen users/items get representations
  from their revealed edges E_new, which only a graph backbone can use);
- a cold-start split with no generator (nothing produces the cold-start users'
  target-domain vectors: they have no target edges for a backbone to use);
- a split kind no protocol uses.
"""

from __future__ import annotations

from cdr.config.experiment import ExperimentConfig
from cdr.errors import CompositionError
from cdr.protocols import ProtocolSpec
from cdr.registry import Registry

#: the inductive split without a graph backbone, whatever the generator
_NO_BACKBONE = (
    "the inductive split needs a graph backbone: unseen users and items are "
    "represented from their revealed edges (E_new)",
    "add --backbone inmo, or --set split.kind=cold-start",
)
#: why a built-in split refuses a combination: (split kind, has generator, has backbone)
_WHY: dict[tuple[str, bool, bool], tuple[str, str]] = {
    ("inductive", True, False): _NO_BACKBONE,
    ("inductive", False, False): _NO_BACKBONE,
    ("cold-start", False, False): (
        "with no backbone and no generator nothing produces cold-start users' "
        "target-domain vectors",
        "add --generator ddpm (or mapping, ptupcdr, identity)",
    ),
    ("cold-start", False, True): (
        "a cold-start split with a graph backbone needs a generator: cold-start users "
        "have no target-domain edges for the backbone to represent them from",
        "add --generator ddpm (or identity to use the aligned auxiliary "
        "representation), or --set split.kind=inductive",
    ),
}


def plan(cfg: ExperimentConfig, registry: Registry | None = None) -> ProtocolSpec:
    """The protocol for ``cfg``, or CompositionError saying why the combination cannot run."""
    registry = registry or Registry()
    generator, backbone, aligner = cfg.generator.kind, cfg.backbone.kind, cfg.aligner.kind
    if aligner != "none" and backbone == "none":
        raise CompositionError(
            f"aligner {aligner!r} needs a graph backbone: it aligns the backbone's user "
            "representations of the two domains",
            hint="add --backbone inmo (or lightgcn, mf), or --aligner none",
        )
    has_generator, has_backbone = generator != "none", backbone != "none"
    split = cfg.split.kind
    candidates = [p for p in registry.protocols() if p.split_kind == split]
    if not candidates:
        known = sorted({p.split_kind for p in registry.protocols()})
        raise CompositionError(
            f"split.kind: no protocol uses the split {split!r}; known: {', '.join(known)}"
        )
    for protocol in candidates:
        if protocol.accepts(has_generator, has_backbone):
            return protocol
    why, hint = _WHY.get(
        (split, has_generator, has_backbone),
        (
            f"no protocol on the {split!r} split takes "
            f"{'a' if has_generator else 'no'} generator and "
            f"{'a' if has_backbone else 'no'} graph backbone",
            "protocols: " + ", ".join(p.name for p in candidates),
        ),
    )
    raise CompositionError(why, hint=hint)
