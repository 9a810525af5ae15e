"""What every stage of every protocol shares: the frozen run context and the run state.

``RunContext`` is set up once per run (config, registry, device, dataset, reporter, run
directory, the component container); stages never rebuild any of it. ``RunState`` is
what stages hand each other: a stage reads the fields it declares as ``needs`` and returns
a new state with the fields it ``gives`` (``attrs.evolve``); ``require`` turns a missing
field into a one-line error naming the stage, which the protocol's own check makes
unreachable for registered protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import attrs
import torch
from torch import Tensor, nn

from cdr.components import BuildContext
from cdr.config.experiment import ExperimentConfig
from cdr.container import Container, build_container
from cdr.data.records import CrossDomainDataset, Interactions
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.errors import CompositionError
from cdr.evaluation.ranking import RankingResult
from cdr.evaluation.results import write_results
from cdr.interfaces import Generator, GraphBackbone, Scorer
from cdr.progress import Reporter, null_reporter
from cdr.protocols import ProtocolSpec, StageSpec
from cdr.registry import Registry
from cdr.runs import CHECKPOINTS, write_json
from cdr.seeding import seed_everything

T = TypeVar("T")

#: which protocol ran and what it masked when ranking
PROTOCOL = "protocol.json"


@attrs.frozen(eq=False)
class RunContext:
    """One run's fixed surroundings (set up once, shared read-only by all stages)."""

    cfg: ExperimentConfig
    registry: Registry
    run_dir: Path
    device: torch.device
    dataset: CrossDomainDataset
    report: Reporter
    container: Container

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / CHECKPOINTS

    def build_context(self, **sizes: Any) -> BuildContext:
        """A BuildContext on this run's device and seed (``sizes`` override the rest)."""
        base: dict[str, Any] = {
            "dim": self.cfg.trainer.dim,
            "in_dim": self.cfg.trainer.dim,
            "device": self.device,
            "seed": self.cfg.seed,
        }
        return BuildContext(**{**base, **sizes})

    def generator(self, ctx: BuildContext) -> nn.Module:
        """The configured generator (a trainable module satisfying ``Generator``)."""
        built = self.container.generator(ctx=ctx)
        if not isinstance(built, Generator) or not isinstance(built, nn.Module):
            raise CompositionError(
                f"generator {self.cfg.generator.kind!r}: not a Generator module "
                "(needs traits, loss, generate; see cdr.generators.base.GeneratorBase)"
            )
        return built

    def backbone(self, ctx: BuildContext) -> nn.Module:
        built = self.container.backbone(ctx=ctx)
        if not isinstance(built, GraphBackbone) or not isinstance(built, nn.Module):
            raise CompositionError(
                f"backbone {self.cfg.backbone.kind!r}: not a GraphBackbone module "
                "(see cdr.backbones.base.BackboneBase)",
                hint="use --backbone inmo (or lightgcn, mf)",
            )
        return built

    def scorer(self, ctx: BuildContext | None = None) -> Scorer:
        built = self.container.scorer(ctx=ctx or self.build_context())
        if not isinstance(built, Scorer):
            raise CompositionError(f"scorer {self.cfg.scorer.kind!r}: not a Scorer")
        return built


@attrs.frozen(eq=False)
class RunState:
    """What stages hand each other; every field starts empty and is given by one stage.

    split: the protocol's split; metrics: flat metrics so far; per_user: per-user results
    by slice; notes: what a stage left out and why (written to ``notes.json``); the other
    fields are the protocol families' intermediate results (see each pipeline module).
    """

    split: Any = None
    metrics: dict[str, float] = attrs.field(factory=dict)
    per_user: dict[str, RankingResult] = attrs.field(factory=dict)
    notes: tuple[str, ...] = ()
    # cold-start family (encoders -> target space -> generator)
    features: dict[str, Tensor] | None = None
    visible: Interactions | None = None
    space: Any = None  # coldstart.TargetSpace
    generation: Any = None  # generation.Generation (generator, batches, runner)
    gen_users: Any = None  # generation.GeneratorUsers (who trains and selects)
    vectors: Tensor | None = None  # generated target vectors of the test users
    # graph-backbone family
    graphs: Any = None  # dict[str, backbone_model.DomainData]
    model: Any = None  # backbone_model.InductiveModel
    scorer: Scorer | None = None
    reps: dict[str, tuple[Tensor, Tensor]] | None = None

    def with_metrics(self, metrics: dict[str, float], **changes: Any) -> RunState:
        return attrs.evolve(self, metrics={**self.metrics, **metrics}, **changes)


def require(value: T | None, field: str, stage: str) -> T:
    if value is None:
        raise CompositionError(f"stage {stage!r}: no {field} (an earlier stage must give it)")
    return value


def make_context(
    cfg: ExperimentConfig, registry: Registry, run_dir: Path, reporter: Reporter | None
) -> RunContext:
    """Seed, pick the device, load the dataset, build the container: once per run."""
    seed_everything(cfg.seed)
    report = reporter or null_reporter
    device = resolve_device(cfg.device)
    dataset = load_dataset(cfg.dataset, registry, reporter=reporter)
    return RunContext(
        cfg, registry, run_dir, device, dataset, report, build_container(cfg, registry)
    )


def run_protocol(
    protocol: ProtocolSpec,
    cfg: ExperimentConfig,
    registry: Registry,
    run_dir: Path,
    reporter: Reporter | None = None,
) -> dict[str, float]:
    """Set up the context, make the protocol's split, run its stages; the final metrics."""
    ctx = make_context(cfg, registry, run_dir, reporter)
    write_json(run_dir / PROTOCOL, protocol.describe())
    state = RunState(split=protocol.split(ctx.dataset, cfg.split))
    for stage in protocol.stages:
        state = stage.run(ctx, state)
    return state.metrics


def write_outputs(ctx: RunContext, state: RunState) -> RunState:
    """The one per-run output format of every protocol: ``metrics.json`` (non-finite values
    as null), ``per_user.parquet`` (one row per slice and user), ``notes.json``."""
    write_results(ctx.run_dir, state.metrics, state.per_user)
    if state.notes:
        write_json(ctx.run_dir / "notes.json", {"notes": list(state.notes)})
    return state


#: the outputs stage of protocols that save no serving artifacts
WRITE = StageSpec("outputs", write_outputs)
