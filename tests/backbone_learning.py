"""A tiny inductive experiment on planted synthetic data, for the baselines' learning tests.

The synthetic provider plants user tastes over 4 topics and makes interactions strongly
taste-driven (selectivity 5), so a model that learns collaborative signal beats the
popularity reference (computed by the protocol on the same split, same masks) by a wide
margin, while one that learns nothing (or ranks by popularity) does not.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from cdr.components import GROUPS
from cdr.config.loading import load_experiment
from cdr.pipelines.context import run_protocol
from cdr.pipelines.inductive import protocol
from cdr.registry import Registry

#: the baselines of issue 16 this helper registers when the installed metadata lacks them
BASELINES = {
    "ngcf": "cdr.backbones.ngcf:component",
    "xsimgcl": "cdr.backbones.xsimgcl:component",
    "alpharec": "cdr.backbones.alpharec:component",
}

PLANTED = [
    "dataset.size=tiny",
    "dataset.num_users=200",
    "dataset.source_items=80",
    "dataset.target_items=80",
    "dataset.interactions_per_user=12",
    "dataset.selectivity=5.0",
    "dataset.num_topics=4",
    "dataset.images=false",
    "split.kind=inductive",
    "split.unseen_item_fraction=0.2",
    "trainer.batch_size=64",
    "trainer.dim=32",
    "trainer.lr=0.01",
    "evaluation.ks=[20]",
    "device=cpu",
]


def registry() -> Registry:
    """The installed components plus the baselines above (until pyproject lists them)."""
    installed = [ep for g in GROUPS for ep in entry_points(group=f"cdr.{g}")]
    names = {ep.name for ep in installed if ep.group == "cdr.backbones"}
    extra = [
        EntryPoint(name, target, "cdr.backbones")
        for name, target in BASELINES.items()
        if name not in names
    ]
    return Registry([*installed, *extra])


def planted_run(run_dir: Path, backbone: str, extra: list[str]) -> dict[str, float]:
    """Metrics of the inductive protocol with ``backbone`` (no aligner) on planted data."""
    reg = registry()
    components = {"backbone": backbone, "aligner": "none", "generator": "none"}
    cfg = load_experiment(None, reg, [*PLANTED, *extra], components)
    run_dir.mkdir(parents=True)
    return run_protocol(protocol, cfg, reg, run_dir)
