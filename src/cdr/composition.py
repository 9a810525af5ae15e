"""Which compositions make sense, and which pipeline runs each.

Refused up front (with why) rather than failing deep inside training:
- an aligner without a graph backbone (it couples the backbone's per-domain user reps);
- an inductive split without a graph backbone (unseen users/items get representations
  from their revealed edges E_new, which only a graph backbone can use);
- a cold-start split with no generator (nothing produces the cold-start users'
  target-domain vectors: they have no target edges for a backbone to use).
"""

from __future__ import annotations

from enum import StrEnum

from cdr.config.experiment import ExperimentConfig
from cdr.errors import CompositionError


class PipelineKind(StrEnum):
    """cold-start: MuSiC protocol, encoders + generator (no graph);
    inductive: MICRec protocol, graph backbone (+ aligner), no generator;
    composed: graph backbone (+ aligner) whose per-domain user reps feed a generator."""

    COLD_START = "cold-start"
    INDUCTIVE = "inductive"
    COMPOSED = "composed"


def plan(cfg: ExperimentConfig) -> PipelineKind:
    """The pipeline for ``cfg``, or CompositionError saying why the combination cannot run."""
    generator, backbone, aligner = cfg.generator.kind, cfg.backbone.kind, cfg.aligner.kind
    split = cfg.split.kind
    if aligner != "none" and backbone == "none":
        raise CompositionError(
            f"aligner {aligner!r} needs a graph backbone: it aligns the backbone's user "
            "representations of the two domains",
            hint="add --backbone inmo (or lightgcn, mf), or --aligner none",
        )
    if backbone == "none":
        if split == "inductive":
            raise CompositionError(
                "the inductive split needs a graph backbone: unseen users and items are "
                "represented from their revealed edges (E_new)",
                hint="add --backbone inmo, or --set split.kind=cold-start",
            )
        if generator == "none":
            raise CompositionError(
                "with no backbone and no generator nothing produces cold-start users' "
                "target-domain vectors",
                hint="add --generator ddpm (or mapping, ptupcdr, identity)",
            )
        return PipelineKind.COLD_START
    if generator == "none":
        if split == "cold-start":
            raise CompositionError(
                "a cold-start split with a graph backbone needs a generator: cold-start users "
                "have no target-domain edges for the backbone to represent them from",
                hint="add --generator ddpm (or identity to use the aligned auxiliary "
                "representation), or --set split.kind=inductive",
            )
        return PipelineKind.INDUCTIVE
    return PipelineKind.COMPOSED
