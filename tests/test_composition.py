from __future__ import annotations

import attrs
import pytest
from support import FAKE_OVERRIDES, registry_with_fakes

from cdr.composition import plan
from cdr.config import ExperimentConfig
from cdr.config.loading import apply_overrides, structure_experiment
from cdr.errors import CompositionError

REGISTRY = registry_with_fakes()


def cfg(
    generator: str, backbone: str, aligner: str = "none", split: str = "cold-start"
) -> ExperimentConfig:
    """A config whose component kinds are set without needing those components installed."""
    base = structure_experiment(
        apply_overrides(
            {},
            list(FAKE_OVERRIDES),
        ),
        REGISTRY,
    )

    def kind(section: object, name: str) -> object:
        return attrs.evolve(section, kind=name)  # type: ignore[misc]

    return attrs.evolve(
        base,
        generator=kind(base.generator, generator),
        backbone=kind(base.backbone, backbone),
        aligner=kind(base.aligner, aligner),
        split=attrs.evolve(base.split, kind=split),
    )


def test_generator_without_backbone_is_the_music_pipeline() -> None:
    assert plan(cfg("ddpm", "none"), REGISTRY).name == "cold-start"


def test_backbone_without_generator_on_inductive_split_is_the_micrec_pipeline() -> None:
    assert plan(cfg("none", "inmo", "infonce", split="inductive"), REGISTRY).name == "inductive"


def test_generator_and_backbone_compose() -> None:
    assert plan(cfg("ddpm", "inmo"), REGISTRY).name == "composed-cold-start"
    assert plan(cfg("ddpm", "inmo", split="inductive"), REGISTRY).name == "composed-inductive"


@pytest.mark.parametrize(
    ("generator", "backbone", "aligner", "split", "why"),
    [
        ("ddpm", "none", "infonce", "cold-start", "aligner 'infonce' needs a graph backbone"),
        ("ddpm", "none", "none", "inductive", "inductive split needs a graph backbone"),
        ("none", "none", "none", "cold-start", "nothing produces cold-start users"),
        (
            "none",
            "inmo",
            "none",
            "cold-start",
            "cold-start split with a graph backbone needs a generator",
        ),
    ],
)
def test_meaningless_combinations_are_refused_with_why(
    generator: str, backbone: str, aligner: str, split: str, why: str
) -> None:
    with pytest.raises(CompositionError, match=why):
        plan(cfg(generator, backbone, aligner, split), REGISTRY)
