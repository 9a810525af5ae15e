"""MuSiC cold-start pipeline: features -> target space -> two-stage generator -> cold users.

Stages (MuSiC sections 3.2-3.5; see docs/music.md for the design choices):

0. Target space (feature extraction module, 3.2): projection heads (``heads`` config:
   activation, hidden width, dropout) map each domain's item and user features into a
   space where <f_u, f_v> predicts that domain's ratings (eq. 8 + MSE): target heads on the
   target ratings of side and training users, auxiliary heads on the auxiliary ratings (one
   batch of each per step). A head is never applied to another domain's features (their
   bases differ: the ``id`` encoder's SVDs are per domain); a generator that shares the
   user space (CMF, identity, DiffCDR) gets one user head for both domains. Model selection
   on a 10% hold-out of the target ratings, at ``trainer.stage0_lr`` when set (deviation:
   the paper trains everything at one grid-searched rate; a fixed rate here keeps the space
   every method is compared in converged whatever the tuned ``trainer.lr``, which at 1e-4
   left it improving at epoch 400 of 400). Each step runs a head once per distinct user
   / item of its batch of ratings and gathers per rating (``per_entity``): f = MLP(e) is
   the entity's vector, so it gets one dropout mask per step (running the heads per
   rating, as before, gave each rating its own mask and most of a run's time: an EMCDR
   run on ml-100k-genres spent 106 of 117 s in stage 0 under cProfile, and takes 28.5 s
   in all now, without the profiler, on one thread). The heads are then
   frozen: x0 = f_u^T (target vectors), f_con = f_u^A (auxiliary vectors), f_v^T (items).
1. Side users (eq. 11): the generator's unconditional loss on side users' x0, when the
   generator's ``traits.side_users`` (ddpm: the config's ``side_users``; "w/o side" = false).
2. Overlapping training users (eq. 12-13): lambda * generator loss + (1 - lambda) * MSE of
   the ratings predicted from generated vectors; lambda = ``traits.joint_weight``. Early
   stopping on validation users' RMSE only.
3. Test: cold-start users' vectors generated from their auxiliary vectors; MAE, RMSE and
   NDCG on their seen-item ratings, and on unseen items (dual cold-start) when the split
   holds items out.

As a protocol (``protocol`` below, registered as ``cold-start``): features -> generator ->
target space (stage 0) -> runner -> stage 1 -> stage 2 -> test -> outputs. Ratings and
rankings are read off the space through the configured ``Scorer`` (eq. 8: ``dot``).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.config.experiment import ExperimentConfig, HeadsConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import ColdStartSplit, cold_start_split
from cdr.encoders.features import compute_features
from cdr.encoders.projection import ProjectionHead
from cdr.errors import CompositionError, SplitError
from cdr.evaluation.ranking import RankingResult
from cdr.evaluation.references import (
    PREFIX,
    RANKING_REFERENCES,
    RATING_REFERENCES,
    cold_start_references,
)
from cdr.generators.base import GeneratorBase
from cdr.interfaces import Entity, Scorer
from cdr.pipelines.coldstart_eval import evaluate_cold_users
from cdr.pipelines.context import RunContext, RunState, require, write_outputs
from cdr.pipelines.generation import (
    BUILD,
    RUNNER,
    SIDE,
    Generation,
    GeneratorUsers,
    TargetSpace,
    _to,
    overlapping_users,
)
from cdr.progress import Reporter
from cdr.protocols import ProtocolSpec, StageSpec
from cdr.scorers.dot import DotScorer
from cdr.seeding import derive_seed
from cdr.training.loop import Budget, Stage, fit

__all__ = ["TargetSpace", "fit_target_space", "protocol", "save_space_serving"]

#: stage 0 batches are ratings, not users: this many times trainer.batch_size
RATING_BATCH_FACTOR = 16


def _visible_target(dataset: CrossDomainDataset, split: ColdStartSplit) -> Domain:
    """The target domain as training may see it: side + train users, seen items only."""
    target = dataset.target
    users = torch.cat([split.train_users, split.side_users])
    member = torch.zeros(dataset.num_users, dtype=torch.bool)
    member[users] = True
    keep = member[target.interactions.user]
    if split.unseen_items.numel():
        unseen = torch.zeros(target.num_items, dtype=torch.bool)
        unseen[split.unseen_items] = True
        keep &= ~unseen[target.interactions.item]
    reviews = target.reviews
    if reviews is not None:
        reviews = tuple(r for r, k in zip(reviews, keep.tolist(), strict=True) if k)
    return attrs.evolve(target, interactions=target.interactions.select(keep), reviews=reviews)


def _holdout(inter: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(inter), generator=gen)
    cut = round(len(inter) * fraction)
    return inter.select(perm[cut:]), inter.select(perm[:cut])


class FeatureHeads(nn.Module):
    """The projection heads of MuSiC 3.2, one per domain and entity.

    Each domain's features have their own basis (the ``id`` encoder's SVDs are computed per
    domain; content encoders may differ per domain too), so a head fitted on one domain's
    ratings is never applied to the other's features: ``item``/``user`` map the target
    domain, ``source_item``/``source_user`` the auxiliary one. With ``shared_user`` (a
    generator whose traits share the user space: CMF, identity) one user head serves both
    domains and is fitted on both domains' ratings.
    """

    def __init__(
        self,
        item_dims: tuple[int, int],
        user_dims: tuple[int, int],
        dim: int,
        heads: HeadsConfig,
        shared_user: bool,
    ) -> None:
        super().__init__()

        def head(in_dim: int) -> ProjectionHead:
            return ProjectionHead(in_dim, heads.hidden, dim, heads.activation, heads.dropout)

        self.item = head(item_dims[0])
        self.source_item = head(item_dims[1])
        self.user = head(user_dims[0])
        if shared_user and user_dims[0] != user_dims[1]:
            raise CompositionError(
                f"generator shares the user space, but the user features differ in width "
                f"({user_dims[0]} target, {user_dims[1]} auxiliary)"
            )
        self.source_user = self.user if shared_user else head(user_dims[1])


def per_entity(head: nn.Module, raw: Tensor, index: Tensor) -> Tensor:
    """``head`` applied once per distinct user / item of a batch of ratings, then gathered
    per rating: [B, dim]. The feature vector f = MLP(e) is a property of the entity (eq. 8),
    so each entity gets one dropout mask per step, and a batch of 4,096 ratings costs one
    head pass over its few hundred distinct users instead of 4,096."""
    unique, inverse = torch.unique(index, return_inverse=True)
    out: Tensor = head(raw[unique])[inverse]
    return out


def fit_target_space(
    cfg: ExperimentConfig,
    raw: dict[str, Tensor],
    ratings: Interactions,
    source_ratings: Interactions,
    shared_ratings: Interactions | None,
    device: torch.device,
    reporter: Reporter,
    checkpoints: Path | None = None,
) -> tuple[TargetSpace, dict[str, float]]:
    """Stage 0: fit the heads on ratings (eq. 8 + MSE); return frozen vectors.

    raw: "item" [I_t, F], "source_item" [I_s, F'], "target_user", "source_user" [U, F_u];
    ratings: target ratings training may see (selection on a 10% hold-out of them);
    source_ratings: the auxiliary domain's ratings (they fit the auxiliary heads: a batch of
    them with every target batch); shared_ratings (a shared user space, CMF): target ratings
    to be explained from *auxiliary* user features too.
    """
    trainer = cfg.trainer
    shared_user = shared_ratings is not None
    heads = FeatureHeads(
        (raw["item"].shape[1], raw["source_item"].shape[1]),
        (raw["target_user"].shape[1], raw["source_user"].shape[1]),
        trainer.dim,
        cfg.heads,
        shared_user,
    )
    heads.to(device)
    train, held = _holdout(ratings, 0.1, derive_seed(cfg.seed, "stage0-holdout"))
    train, held = _to(train, device), _to(held, device)
    source = _to(source_ratings, device)
    shared = _to(shared_ratings, device) if shared_ratings is not None else None
    batch = trainer.batch_size * RATING_BATCH_FACTOR
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "stage0"))
    items, users = raw["item"], raw["target_user"]

    def predict(inter: Interactions, user_raw: Tensor) -> Tensor:
        """Target ratings: the target item head, and the user head for ``user_raw``."""
        user_head = heads.user if user_raw is users else heads.source_user
        u = per_entity(user_head, user_raw, inter.user)  # [B, dim]
        return (u * per_entity(heads.item, items, inter.item)).sum(-1)

    def predict_source(inter: Interactions) -> Tensor:
        """Auxiliary ratings: the auxiliary user and item heads."""
        u = per_entity(heads.source_user, raw["source_user"], inter.user)
        return (u * per_entity(heads.source_item, raw["source_item"], inter.item)).sum(-1)

    def sample(pool: Interactions) -> Interactions:
        pick = torch.randint(0, len(pool), (min(batch, len(pool)),), generator=gen)
        return pool.select(pick.to(device))

    def epoch_batches(_: int) -> list[Tensor]:
        perm = torch.randperm(len(train), generator=gen).to(device)
        return [perm[start : start + batch] for start in range(0, len(train), batch)]

    def loss(rows: Tensor) -> Tensor:
        part = train.select(rows)
        value = F.mse_loss(predict(part, users), part.rating)
        if len(source):
            sub = sample(source)
            value = value + F.mse_loss(predict_source(sub), sub.rating)
        if shared is not None and len(shared):
            sub = sample(shared)
            value = value + F.mse_loss(predict(sub, raw["source_user"]), sub.rating)
        return value

    def val_rmse() -> float:
        return float(F.mse_loss(predict(held, users), held.rating).sqrt())

    stage: Stage[Tensor] = Stage(
        name="stage0",
        module=heads,
        optimizer=torch.optim.Adam(
            heads.parameters(), lr=trainer.stage_lr(0), weight_decay=trainer.weight_decay
        ),
        batches=epoch_batches,
        loss=loss,
        budget=Budget(trainer.stage_epochs(0), 1, trainer.patience, "min"),
        validate=val_rmse,
        generators={"stage0": gen},
        task="stage 0: target space",
    )
    result = fit(stage, checkpoints, reporter)
    with torch.no_grad():
        space = TargetSpace(
            target_users=heads.user(users),
            source_users=heads.source_user(raw["source_user"]),
            target_items=heads.item(items),
            source_items=heads.source_item(raw["source_item"]),
        )
    metrics = {
        "stage0_val_rmse": result.best,
        "stage0_epochs": float(result.best_epoch + 1),
        "stage0_budget": float(stage.budget.epochs),
    }
    return space, metrics


# -- stages --------------------------------------------------------------------------------


def features(ctx: RunContext, state: RunState) -> RunState:
    """Content features (3.2): items and users of both domains, the target domain restricted
    to what training may see (side + training users, seen items)."""
    split: ColdStartSplit = state.split
    visible = _visible_target(ctx.dataset, split)
    if len(visible.interactions) == 0:
        raise SplitError(f"dataset {ctx.dataset.name!r}: no visible target ratings to train on")
    cfg = ctx.cfg

    def encode(domain: Domain, entity: Entity) -> Tensor:
        enc = cfg.encoders.item if entity == "item" else cfg.encoders.user
        return compute_features(
            enc, ctx.registry, domain, entity, device=ctx.device, reporter=ctx.report
        )

    raw = {
        "item": encode(visible, "item"),
        "source_item": encode(ctx.dataset.source, "item"),
        "target_user": encode(visible, "user"),
        "source_user": encode(ctx.dataset.source, "user"),
    }
    raw = {k: v.float().to(ctx.device) for k, v in raw.items()}
    return attrs.evolve(state, features=raw, visible=visible.interactions)


def target_space(ctx: RunContext, state: RunState) -> RunState:
    """Stage 0: the heads fitted on target ratings give the frozen space; the scorer reads
    ratings off it; training, validation and side users for the generator."""
    split: ColdStartSplit = state.split
    raw = require(state.features, "features", "target space")
    generation: Generation = require(state.generation, "generation", "target space")
    dataset = ctx.dataset

    def seen(users: Tensor) -> Interactions:
        return split.target_interactions(dataset, users, "seen")

    shared = generation.module.traits.shared_user_space
    stage0_users = torch.cat([split.train_users, split.side_users])
    space, metrics = fit_target_space(
        ctx.cfg,
        raw,
        seen(stage0_users),
        dataset.source.interactions,
        seen(split.train_users) if shared else None,
        ctx.device,
        ctx.report,
        ctx.checkpoints,
    )
    val_ratings = seen(split.val_users)
    has_val = len(val_ratings) > 0
    users = GeneratorUsers(
        side=split.side_users,
        train=split.train_users,
        val=split.val_users if has_val else split.train_users,
        train_ratings=seen(split.train_users),
        val_ratings=val_ratings if has_val else seen(split.train_users),
        val_exclude=None,
        history=dataset.source.interactions,
    )
    return state.with_metrics(metrics, space=space, scorer=ctx.scorer(), gen_users=users)


def evaluation_sets(
    dataset: CrossDomainDataset, split: ColdStartSplit
) -> list[tuple[str, Interactions, Tensor]]:
    """(metric prefix, the test users' ratings, candidate items [I] bool) to evaluate on:
    their seen items; and, when the split holds items out (dual cold-start), those."""
    unseen = torch.zeros(dataset.target.num_items, dtype=torch.bool)
    unseen[split.unseen_items] = True
    seen = split.target_interactions(dataset, split.test_users, "seen")
    sets = [("", seen, ~unseen)]
    if split.unseen_items.numel():
        held_out = split.target_interactions(dataset, split.test_users, "unseen")
        sets.append(("dual_", held_out, unseen))
    return sets


def cold_start_test(ctx: RunContext, state: RunState) -> RunState:
    """Cold-start users (3.3.4, 3.4) from noise + their auxiliary vectors: rating error and
    ranking on their seen items; on unseen items too (dual cold-start) when held out."""
    split: ColdStartSplit = state.split
    generation: Generation = require(state.generation, "generation", "test")
    runner = require(generation.runner, "generation.runner", "test")
    scorer: Scorer = require(state.scorer, "scorer", "test")
    space: TargetSpace = runner.space
    dataset, ev = ctx.dataset, ctx.cfg.evaluation
    with torch.no_grad():
        vectors = runner.generate(
            split.test_users.to(ctx.device), seed=derive_seed(ctx.cfg.seed, "test")
        )
    ks = tuple(sorted(set(ev.ks) | {ev.k}))
    metrics: dict[str, float] = {}
    per_user: dict[str, RankingResult] = {}
    for prefix, ratings, candidates in evaluation_sets(dataset, split):
        found, found_per_user = evaluate_cold_users(
            scorer, vectors, split.test_users, space.target_items, ratings, candidates,
            ks=ks, k=ev.k, batch_size=ev.batch_size, prefix=prefix,
        )  # fmt: skip
        metrics.update(found)
        per_user.update(found_per_user)
    generator = generation.generator
    if isinstance(generator, GeneratorBase):
        metrics.update(generator.diagnostics())
    return state.with_metrics(metrics, vectors=vectors, per_user={**state.per_user, **per_user})


def references(ctx: RunContext, state: RunState) -> RunState:
    """The reference predictors (``evaluation.references``) on the same cold-start users,
    relevant items and candidates as the models' main table."""
    split: ColdStartSplit = state.split
    dataset, ev = ctx.dataset, ctx.cfg.evaluation
    train = require(state.visible, "visible", "references")
    num_items = dataset.target.num_items
    ks = tuple(sorted(set(ev.ks) | {ev.k}))
    vectors = cold_start_references(
        train, dataset.source.interactions, split.test_users, dataset.num_users, num_items
    )
    # the models' sets: on dual cold-start's held-out items no reference has a training
    # rating, so the item mean falls back to the global mean and popularity ties them all
    sets = evaluation_sets(dataset, split)
    metrics: dict[str, float] = {}
    for name, (users, items) in vectors.items():
        rating = name in RATING_REFERENCES
        ranking = name in RANKING_REFERENCES
        for prefix, ratings, candidates in sets:
            found, _ = evaluate_cold_users(
                DotScorer(), users, split.test_users, items, ratings, candidates,
                ks=ks, k=ev.k, batch_size=ev.batch_size, prefix=prefix,
            )  # fmt: skip
            for key, value in found.items():
                plain = key.removeprefix(prefix)
                error = plain in ("mae", "rmse")
                if (error and rating) or (not error and ranking):
                    metrics[f"{PREFIX}/{name}/{key}"] = value
    return state.with_metrics(metrics)


def outputs(ctx: RunContext, state: RunState) -> RunState:
    """``metrics.json``, ``per_user.parquet``, ``notes.json`` and the serving artifacts."""
    split: ColdStartSplit = state.split
    generation: Generation = require(state.generation, "generation", "outputs")
    runner = require(generation.runner, "generation.runner", "outputs")
    write_outputs(ctx, state)
    save_space_serving(
        ctx.run_dir,
        ctx.cfg,
        ctx.dataset,
        require(state.visible, "visible", "outputs"),
        runner.space,
        generation.generator,
        split.test_users,
        require(state.vectors, "vectors", "outputs"),
    )
    return state


FEATURES = StageSpec("features", features, needs=("split",), gives=("features", "visible"))
SPACE = StageSpec(
    "stage 0: target space",
    target_space,
    needs=("features", "generation"),
    gives=("space", "scorer", "gen_users"),
)
TEST = StageSpec("test", cold_start_test, needs=("runner", "scorer"), gives=("vectors",))
REFERENCES = StageSpec("references", references, needs=("visible",))
OUTPUTS = StageSpec("outputs", outputs, needs=("runner", "visible", "vectors"))

protocol = ProtocolSpec(
    name="cold-start",
    split_kind="cold-start",
    split=cold_start_split,
    generator="yes",
    backbone="no",
    stages=(
        FEATURES,
        BUILD,
        SPACE,
        RUNNER,
        SIDE,
        overlapping_users("rmse"),
        TEST,
        REFERENCES,
        OUTPUTS,
    ),
    summary="MuSiC: content features -> target space -> generator -> cold-start users",
)


def save_space_serving(
    run_dir: Path,
    cfg: ExperimentConfig,
    dataset: CrossDomainDataset,
    seen: Interactions,
    space: TargetSpace,
    generator: nn.Module,
    test_users: Tensor,
    vectors: Tensor,
) -> None:
    """Serving artifacts of a frozen target space: known users' target vectors (cold test
    users: their generated ones), item vectors, ``seen`` target edges, the generator.

    Generators whose ``traits.servable`` is False (PTUPCDR: it reads the auxiliary history)
    are not saved for serving new cold-start users: the bundle's fold-in gives a vector,
    not a history.
    """
    from cdr.serving.artifacts import ServingArtifacts, save_artifacts

    target_users = space.target_users.detach().clone()
    target_users[test_users.to(target_users.device)] = vectors.detach()
    servable = isinstance(generator, GeneratorBase) and generator.traits.servable
    dim = space.target_users.shape[1]
    save_artifacts(
        run_dir,
        ServingArtifacts(
            user_ids=dataset.user_ids,
            source_item_ids=dataset.source.item_ids,
            target_item_ids=dataset.target.item_ids,
            source_users=space.source_users,
            target_users=target_users,
            source_items=space.source_items,
            target_items=space.target_items,
            seen_user=seen.user,
            seen_item=seen.item,
            generator=generator if servable else None,
            generator_spec={"kind": cfg.generator.kind, "dim": dim, "in_dim": dim}
            if servable
            else None,
        ),
        dataset.source.interactions,
    )
