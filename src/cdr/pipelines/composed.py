"""The composed protocols: a graph backbone (+ aligner) per domain feeds a generator.

``cdr compose --generator ddpm --backbone inmo`` runs these: neither paper's model, both
papers' parts. On the cold-start split (``composed-cold-start``, MuSiC protocol):

1. Backbones: one per domain, trained jointly (BPR + the backbone's own loss + the aligner
   on overlapping training users), on the auxiliary domain's edges and the target edges of
   training + side users (seen items). Early stopping on a 10% edge hold-out per domain.
2. Frozen representations: auxiliary user vectors f_con, target user vectors x0, item
   vectors of both domains. Ratings are read off the target space as an affine function of
   the scorer, ``r = a s(u, v) + b``, fitted by least squares on training users' ratings
   (a BPR-trained space ranks but is not on the rating scale): ``CalibratedScorer``.
3. Generator: stage 1 on side users' target vectors (eq. 11, when its traits say so),
   stage 2 on overlapping training users, lambda * generator loss + (1 - lambda) * rating
   MSE (eq. 12-13). Selection on validation users' NDCG@k only.
4. Test: cold-start users' target vectors generated from their auxiliary vectors; MAE, RMSE
   (calibrated), NDCG@k over all (seen) target items; the dual cold-start table on unseen
   items when the split holds items out.

On the inductive split (``composed-inductive``) the backbones train and are tested as in
the inductive protocol; the generator then learns, on users with training edges in both
domains, to map a user's auxiliary representation to the target one; at test, users
unseen in the target domain who have auxiliary edges get the generated target vector
instead of the backbone's (from E_new), scored on the same slices as
``generated/target/...``.
"""

from __future__ import annotations

import attrs
import torch

from cdr.data.records import CrossDomainDataset, Interactions
from cdr.data.splits import (
    ColdStartSplit,
    DomainInductiveSplit,
    InductiveSplit,
    cold_start_split,
    inductive_split,
)
from cdr.errors import CompositionError
from cdr.evaluation.inductive import evaluate_inductive
from cdr.evaluation.results import flatten
from cdr.interfaces import Graph
from cdr.pipelines.backbone_model import DOMAINS, DomainData, InductiveModel, domain_data, score_fn
from cdr.pipelines.coldstart import OUTPUTS as COLD_OUTPUTS
from cdr.pipelines.coldstart import REFERENCES as COLD_REFERENCES
from cdr.pipelines.coldstart import TEST as COLD_TEST
from cdr.pipelines.context import WRITE, RunContext, RunState, require
from cdr.pipelines.generation import (
    BUILD,
    RUNNER,
    SIDE,
    Generation,
    GeneratorRunner,
    GeneratorUsers,
    TargetSpace,
    history_table,
    overlapping_users,
)
from cdr.pipelines.inductive import REFERENCES as INDUCTIVE_REFERENCES
from cdr.pipelines.inductive import TEST as INDUCTIVE_TEST
from cdr.pipelines.inductive import train_graphs
from cdr.protocols import ProtocolSpec, StageSpec
from cdr.scorers.calibrated import CalibratedScorer, calibrate
from cdr.seeding import derive_seed

__all__ = ["cold_start_protocol", "inductive_protocol"]

#: fraction of each domain's training edges held out to early-stop the backbones
BACKBONE_HOLDOUT = 0.1


def _holdout_split(inter: Interactions, seed: int) -> DomainInductiveSplit:
    """A 'split' with no unseen nodes: a random edge hold-out as validation."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(inter), generator=gen)
    cut = round(len(inter) * BACKBONE_HOLDOUT)
    empty = torch.empty(0, dtype=torch.long)
    return DomainInductiveSplit(
        empty,
        empty,
        inter.select(perm[cut:]),
        inter.select(perm[:cut]),
        Interactions.empty(),
        Interactions.empty(),
    )


def _visible(dataset: CrossDomainDataset, split: ColdStartSplit) -> dict[str, Interactions]:
    users = torch.cat([split.train_users, split.side_users])
    return {
        "source": dataset.source.interactions,
        "target": split.target_interactions(dataset, users, "seen"),
    }


# -- composed-cold-start -------------------------------------------------------------------


def visible_backbones(ctx: RunContext, state: RunState) -> RunState:
    """Backbones (+ aligner) on both domains' visible graphs, a 10% edge hold-out each."""
    split: ColdStartSplit = state.split
    dataset = ctx.dataset
    visible = _visible(dataset, split)
    data: dict[str, DomainData] = {}
    for name in DOMAINS:
        domain = getattr(dataset, name)
        hold = _holdout_split(visible[name], derive_seed(ctx.cfg.seed, "holdout", name))
        full = Interactions.concat([hold.train, hold.val])
        data[name] = DomainData(
            domain,
            hold,
            Graph(hold.train.edge_index, dataset.num_users, domain.num_items),
            Graph(full.edge_index, dataset.num_users, domain.num_items),
        )
    state = attrs.evolve(state, visible=visible["target"])
    return train_graphs(ctx, state, data, "backbones")


def backbone_space(ctx: RunContext, state: RunState) -> RunState:
    """The frozen space of the trained backbones (full visible graphs), the calibrated
    scorer, and the generator's users: side, training, validation."""
    split: ColdStartSplit = state.split
    model: InductiveModel = require(state.model, "model", "space")
    scorer = model.scorer_for("target", require(state.scorer, "scorer", "space"))
    dataset = ctx.dataset
    with torch.no_grad():
        reps = {name: model.backbone(name).represent(d.full) for name, d in state.graphs.items()}
    space = TargetSpace(
        target_users=reps["target"][0].detach(),
        source_users=reps["source"][0].detach(),
        target_items=reps["target"][1].detach(),
        source_items=reps["source"][1].detach(),
    )
    train_ratings = split.target_interactions(dataset, split.train_users, "seen")
    a, b = calibrate(scorer, space.target_users.cpu(), space.target_items.cpu(), train_ratings)
    val_users = split.val_users if split.val_users.numel() else split.train_users
    users = GeneratorUsers(
        side=split.side_users,
        train=split.train_users,
        val=val_users,
        train_ratings=train_ratings,
        val_ratings=split.target_interactions(dataset, val_users, "seen"),
        val_exclude=None,
        history=dataset.source.interactions,
    )
    return state.with_metrics(
        {"calibration_a": a, "calibration_b": b},
        space=space,
        scorer=CalibratedScorer(scorer, a, b),
        gen_users=users,
    )


VISIBLE_BACKBONES = StageSpec(
    "backbones",
    visible_backbones,
    needs=("split",),
    gives=("graphs", "model", "scorer", "visible"),
)
BACKBONE_SPACE = StageSpec(
    "backbone space",
    backbone_space,
    needs=("graphs", "model", "scorer"),
    gives=("space", "scorer", "gen_users"),
)

cold_start_protocol = ProtocolSpec(
    name="composed-cold-start",
    split_kind="cold-start",
    split=cold_start_split,
    generator="yes",
    backbone="yes",
    stages=(
        VISIBLE_BACKBONES,
        BACKBONE_SPACE,
        BUILD,
        RUNNER,
        SIDE,
        overlapping_users("ndcg"),
        COLD_TEST,
        COLD_REFERENCES,
        COLD_OUTPUTS,
    ),
    summary="graph backbones feed a generator; MuSiC's cold-start users",
)


# -- composed-inductive --------------------------------------------------------------------


def inductive_backbones(ctx: RunContext, state: RunState) -> RunState:
    split: InductiveSplit = state.split
    data = {name: domain_data(ctx.dataset, name, getattr(split, name)) for name in DOMAINS}
    return train_graphs(ctx, state, data, "backbones")


def training_space(ctx: RunContext, state: RunState) -> RunState:
    """The space of the training graph; anchors (training edges in both domains) split
    into the generator's training and validation users; target-only users are side users."""
    split: InductiveSplit = state.split
    model: InductiveModel = require(state.model, "model", "space")
    scorer = model.scorer_for("target", require(state.scorer, "scorer", "space"))
    dataset = ctx.dataset
    with torch.no_grad():
        reps = model.represent({name: d.train for name, d in state.graphs.items()})
    space = TargetSpace(
        target_users=reps["target"][0].detach(),
        source_users=reps["source"][0].detach(),
        target_items=reps["target"][1].detach(),
        source_items=reps["source"][1].detach(),
    )
    target_train, source_train = split.target.train, split.source.train
    in_target = torch.zeros(dataset.num_users, dtype=torch.bool)
    in_target[target_train.user] = True
    in_source = torch.zeros(dataset.num_users, dtype=torch.bool)
    in_source[source_train.user] = True
    anchors = torch.nonzero(in_target & in_source).flatten()
    side = torch.nonzero(in_target & ~in_source).flatten()
    if anchors.numel() < 2:
        raise CompositionError("no users with training edges in both domains to fit a generator")
    order = torch.randperm(anchors.numel(), generator=torch.Generator().manual_seed(ctx.cfg.seed))
    cut = max(1, round(0.1 * anchors.numel()))
    val_users, train_users = anchors[order[:cut]].sort().values, anchors[order[cut:]].sort().values
    a, b = calibrate(scorer, space.target_users.cpu(), space.target_items.cpu(), target_train)
    users = GeneratorUsers(
        side=side,
        train=train_users,
        val=val_users,
        train_ratings=target_train.of_users(train_users, dataset.num_users),
        val_ratings=split.target.validation.of_users(val_users, dataset.num_users),
        val_exclude=target_train,
        history=source_train,
    )
    return attrs.evolve(state, space=space, scorer=CalibratedScorer(scorer, a, b), gen_users=users)


def generated_test(ctx: RunContext, state: RunState) -> RunState:
    """Users unseen in the target domain who have auxiliary edges get generated target
    vectors (from full-graph auxiliary representations), scored on every slice."""
    split: InductiveSplit = state.split
    generation: Generation = require(state.generation, "generation", "generated test")
    reps = require(state.reps, "reps", "generated test")
    model: InductiveModel = require(state.model, "model", "generated test")
    space: TargetSpace = require(state.space, "space", "generated test")
    dataset, device = ctx.dataset, ctx.device
    full_space = attrs.evolve(space, source_users=reps["source"][0].detach())
    source_full = Interactions.concat([split.source.train, split.source.new])
    runner = GeneratorRunner(
        generation.module, full_space, history_table(source_full, dataset.num_users, device)
    )
    has_source = torch.zeros(dataset.num_users, dtype=torch.bool)
    has_source[source_full.user] = True
    cold = split.target.unseen_users[has_source[split.target.unseen_users]]
    target_users = reps["target"][0].detach().clone()
    if cold.numel():
        with torch.no_grad():
            target_users[cold.to(device)] = runner.generate(
                cold.to(device), seed=derive_seed(ctx.cfg.seed, "test")
            )
    ev = ctx.cfg.evaluation
    results = evaluate_inductive(
        score_fn(model.scorer_for("target", ctx.scorer()), target_users, reps["target"][1]),
        split.target,
        dataset.num_users,
        dataset.target.num_items,
        ks=tuple(ev.ks),
        batch_size=ev.batch_size,
    )
    generated = {f"generated/target/{name}": result for name, result in results.items()}
    metrics = {**flatten(generated), "generated_users": float(cold.numel())}
    return state.with_metrics(metrics, per_user={**state.per_user, **generated})


inductive_protocol = ProtocolSpec(
    name="composed-inductive",
    split_kind="inductive",
    split=inductive_split,
    generator="yes",
    backbone="yes",
    stages=(
        StageSpec(
            "backbones",
            inductive_backbones,
            needs=("split",),
            gives=("graphs", "model", "scorer"),
        ),
        INDUCTIVE_TEST,
        StageSpec(
            "training space",
            training_space,
            needs=("graphs", "model", "scorer"),
            gives=("space", "scorer", "gen_users"),
        ),
        BUILD,
        RUNNER,
        SIDE,
        overlapping_users("ndcg"),
        StageSpec("generated test", generated_test, needs=("runner", "model", "reps", "space")),
        INDUCTIVE_REFERENCES,
        WRITE,
    ),
    summary="graph backbones feed a generator; unseen target users get generated vectors",
    masked_at_validation=("train",),
    masked_at_test=("train", "E_new", "validation"),
)
