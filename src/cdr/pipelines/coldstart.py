"""MuSiC cold-start pipeline: features -> target space -> two-stage generator -> cold users.

Stages (MuSiC sections 3.2-3.5; see docs/music.md for the design choices):

0. Target space (feature extraction module, 3.2): projection heads for items and users
   (one user head shared by both domains, as the paper uses one user encoder) are fitted
   so that <f_u^T, f_v^T> predicts the target ratings (eq. 8) of side and training users.
   Model selection on a 10% hold-out of those ratings. The heads are then frozen: x0 =
   f_u^T (target vectors), f_con = f_u^A (auxiliary vectors), f_v^T (items).
1. Side users (eq. 11): the generator's unconditional loss on side users' x0, when the
   generator config has ``side_users = true`` ("w/o side" = false).
2. Overlapping training users (eq. 12-13): lambda * generator loss + (1 - lambda) * MSE of
   the ratings predicted from generated vectors; lambda = the generator config's
   ``joint_weight``. Early stopping on validation users' RMSE only.
3. Test: cold-start users' vectors generated from their auxiliary vectors; MAE, RMSE and
   NDCG on their seen-item ratings, and on unseen items (dual cold-start) when the split
   holds items out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.components import BuildContext
from cdr.config.experiment import ExperimentConfig
from cdr.container import build_container
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import ColdStartSplit, cold_start_split
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.encoders.features import compute_features
from cdr.encoders.projection import ProjectionHead
from cdr.errors import CompositionError, SplitError
from cdr.evaluation.ranking import RankingResult
from cdr.generators.ptupcdr import History
from cdr.interfaces import Entity, Generator
from cdr.pipelines.coldstart_eval import evaluate_cold_users
from cdr.pipelines.generator_training import (
    UserBatches,
    train_overlapping_users,
    train_side_users,
)
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CHECKPOINTS, METRICS, write_json, write_table
from cdr.seeding import derive_seed
from cdr.training.loop import Budget, Stage, fit

#: width of the projection heads' hidden layer (MuSiC 4.1.4)
HEAD_HIDDEN = 128
#: stage 0 batches are ratings, not users: this many times trainer.batch_size
RATING_BATCH_FACTOR = 16
#: most recent auxiliary items kept per user for history-based generators (PTUPCDR)
MAX_HISTORY = 50


@attrs.frozen(eq=False)
class TargetSpace:
    """Frozen stage-0 outputs: user vectors of both domains [U, D], item vectors [I, D]."""

    target_users: Tensor
    source_users: Tensor
    target_items: Tensor
    source_items: Tensor


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


def _to(inter: Interactions, device: torch.device) -> Interactions:
    return Interactions(
        inter.user.to(device),
        inter.item.to(device),
        inter.rating.float().to(device),
        inter.timestamp.to(device),
    )


def _holdout(inter: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(inter), generator=gen)
    cut = round(len(inter) * fraction)
    return inter.select(perm[cut:]), inter.select(perm[:cut])


class FeatureHeads(nn.Module):
    """Item and (shared) user projection heads of MuSiC 3.2."""

    def __init__(self, item_dim: int, user_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.item = ProjectionHead(item_dim, HEAD_HIDDEN, dim, "tanh", dropout)
        self.user = ProjectionHead(user_dim, HEAD_HIDDEN, dim, "tanh", dropout)


def fit_target_space(
    cfg: ExperimentConfig,
    raw: dict[str, Tensor],
    ratings: Interactions,
    shared_ratings: Interactions | None,
    device: torch.device,
    reporter: Reporter,
    checkpoints: Path | None = None,
) -> tuple[TargetSpace, dict[str, float]]:
    """Stage 0: fit the heads on target ratings (eq. 8 + MSE); return frozen vectors.

    raw: "item", "source_item" [I, F_i], "target_user", "source_user" [U, F_u];
    shared_ratings: target ratings to be explained from *auxiliary* user features too (CMF).
    """
    trainer = cfg.trainer
    heads = FeatureHeads(raw["item"].shape[1], raw["target_user"].shape[1], trainer.dim, 0.1)
    heads.to(device)
    train, held = _holdout(ratings, 0.1, derive_seed(cfg.seed, "stage0-holdout"))
    train, held = _to(train, device), _to(held, device)
    shared = _to(shared_ratings, device) if shared_ratings is not None else None
    batch = trainer.batch_size * RATING_BATCH_FACTOR
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "stage0"))
    items, users = raw["item"], raw["target_user"]

    def predict(inter: Interactions, user_raw: Tensor) -> Tensor:
        return (heads.user(user_raw[inter.user]) * heads.item(items[inter.item])).sum(-1)

    def epoch_batches(_: int) -> list[Tensor]:
        perm = torch.randperm(len(train), generator=gen).to(device)
        return [perm[start : start + batch] for start in range(0, len(train), batch)]

    def loss(rows: Tensor) -> Tensor:
        part = train.select(rows)
        value = F.mse_loss(predict(part, users), part.rating)
        if shared is not None and len(shared):
            pick = torch.randint(0, len(shared), (min(batch, len(shared)),), generator=gen)
            sub = shared.select(pick.to(device))
            value = value + F.mse_loss(predict(sub, raw["source_user"]), sub.rating)
        return value

    def val_rmse() -> float:
        return float(F.mse_loss(predict(held, users), held.rating).sqrt())

    stage: Stage[Tensor] = Stage(
        name="stage0",
        module=heads,
        optimizer=torch.optim.Adam(
            heads.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay
        ),
        batches=epoch_batches,
        loss=loss,
        budget=Budget(trainer.epochs, 1, trainer.patience, "min"),
        validate=val_rmse,
        generators={"stage0": gen},
        task="stage 0: target space",
    )
    result = fit(stage, checkpoints, reporter)
    with torch.no_grad():
        space = TargetSpace(
            target_users=heads.user(users),
            source_users=heads.user(raw["source_user"]),
            target_items=heads.item(items),
            source_items=heads.item(raw["source_item"]),
        )
    return space, {"stage0_val_rmse": result.best, "stage0_epochs": float(result.best_epoch + 1)}


def _history(source: Interactions, num_users: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Padded most-recent auxiliary items per user: items [U, L] (-1 = pad), built by sorting."""
    order = torch.argsort(source.timestamp, descending=True, stable=True)
    order = order[torch.argsort(source.user[order], stable=True)]
    user, item = source.user[order], source.item[order]
    counts = torch.bincount(user, minlength=num_users)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(user.numel()) - starts[user]  # rank within the user's history
    keep = pos < MAX_HISTORY
    length = int(min(MAX_HISTORY, int(counts.max()) if counts.numel() else 0)) or 1
    table = torch.full((num_users, length), -1, dtype=torch.long)
    table[user[keep], pos[keep]] = item[keep]
    return table.to(device), (table >= 0).to(device)


class GeneratorRunner:
    """Calls a generator, passing the auxiliary history to those that use one (PTUPCDR)."""

    def __init__(self, generator: Any, space: TargetSpace, history: tuple[Tensor, Tensor]) -> None:
        self.generator = generator
        self.space = space
        self.uses_history = bool(getattr(generator, "uses_history", False))
        self.table, self.mask = history

    def _kw(self, users: Tensor) -> dict[str, History]:
        if not self.uses_history:
            return {}
        idx = self.table[users]
        items = self.space.source_items[idx.clamp_min(0)]  # [B, L, D]
        return {"history": History(items, self.mask[users])}

    def loss(self, users: Tensor, conditional: bool) -> Tensor:
        target = self.space.target_users[users]
        if not conditional:
            return cast(Tensor, self.generator.loss(target, None))
        cond = self.space.source_users[users]
        return cast(Tensor, self.generator.loss(target, cond, **self._kw(users)))

    def generate(self, users: Tensor, seed: int | None = None) -> Tensor:
        cond = self.space.source_users[users]
        return cast(Tensor, self.generator.generate(cond, seed=seed, **self._kw(users)))


class _Wrapped(nn.Module):
    """A non-module generator seen as a parameter-free module."""

    def __init__(self, inner: Generator) -> None:
        super().__init__()
        self.inner = inner

    def loss(self, target: Tensor, condition: Tensor | None) -> Tensor:
        return self.inner.loss(target, condition)

    def generate(self, condition: Tensor, *, seed: int | None = None) -> Tensor:
        return self.inner.generate(condition, seed=seed)


def _rating_loss(vectors: Tensor, users: Tensor, ratings: Interactions, items: Tensor) -> Tensor:
    """eq. 12 over the ratings of ``users`` (rows of ``vectors`` [B, D])."""
    if len(ratings) == 0:
        return vectors.sum() * 0.0
    size = max(int(users.max()), int(ratings.user.max())) + 1
    row = torch.full((size,), -1, dtype=torch.long, device=users.device)
    row[users] = torch.arange(users.numel(), device=users.device)
    part = ratings.select(row[ratings.user] >= 0)
    if len(part) == 0:
        return vectors.sum() * 0.0
    pred = (vectors[row[part.user]] * items[part.item]).sum(-1)
    return F.mse_loss(pred, part.rating)


def _val_rmse(runner: GeneratorRunner, users: Tensor, ratings: Interactions, seed: int) -> float:
    with torch.no_grad():
        vectors = runner.generate(users, seed=seed)
        return float(_rating_loss(vectors, users, ratings, runner.space.target_items).sqrt())


def run_cold_start(
    cfg: ExperimentConfig, registry: Registry, run_dir: Path, reporter: Reporter | None = None
) -> dict[str, float]:
    """Train and evaluate one cold-start experiment; writes metrics/checkpoints to run_dir."""
    report = reporter or null_reporter
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset, registry, reporter=reporter)
    split = cold_start_split(dataset, cfg.split)
    visible = _visible_target(dataset, split)
    if len(visible.interactions) == 0:
        raise SplitError(f"dataset {dataset.name!r}: no visible target ratings to train on")

    # Features (3.2): item content of both domains, user content of both domains.
    def features(domain: Domain, entity: Entity) -> Tensor:
        enc = cfg.encoders.item if entity == "item" else cfg.encoders.user
        return compute_features(enc, registry, domain, entity, device=device, reporter=reporter)

    raw = {
        "item": features(visible, "item"),
        "source_item": features(dataset.source, "item"),
        "target_user": features(visible, "user"),
        "source_user": features(dataset.source, "user"),
    }
    raw = {k: v.float().to(device) for k, v in raw.items()}

    container = build_container(cfg, registry)
    ctx = BuildContext(
        dim=cfg.trainer.dim,
        in_dim=cfg.trainer.dim,
        num_users=dataset.num_users,
        num_items=dataset.target.num_items,
        device=device,
        seed=cfg.seed,
    )
    built = container.generator(ctx=ctx)
    if not isinstance(built, Generator):
        raise CompositionError(
            f"generator {cfg.generator.kind!r}: the cold-start pipeline needs a generator"
        )
    # parameter-free plugin generators need not be modules; an empty one stands in
    generator: nn.Module = built if isinstance(built, nn.Module) else _Wrapped(built)

    seen = lambda users: split.target_interactions(dataset, users, "seen")  # noqa: E731
    shared_space = bool(getattr(generator, "shared_user_space", False))
    stage0_users = torch.cat([split.train_users, split.side_users])
    ckpt_dir = run_dir / CHECKPOINTS
    space, metrics = fit_target_space(
        cfg,
        raw,
        seen(stage0_users),
        seen(split.train_users) if shared_space else None,
        device,
        report,
        ckpt_dir,
    )
    runner = GeneratorRunner(
        generator, space, _history(dataset.source.interactions, dataset.num_users, device)
    )
    lam = float(getattr(cfg.generator, "joint_weight", 1.0))
    use_side = bool(getattr(cfg.generator, "side_users", getattr(generator, "side_users", False)))
    trainer = cfg.trainer
    batches = UserBatches(trainer.batch_size, derive_seed(cfg.seed, "generator"), device)

    # Stage 1 (eq. 11): side users, no condition.
    if use_side:
        train_side_users(generator, runner, split.side_users, trainer, batches, report, ckpt_dir)

    # Stage 2 (eq. 12-13): overlapping training users; select on validation users' RMSE.
    train_ratings = _to(seen(split.train_users), device)
    val_ratings = _to(seen(split.val_users), device)
    select_users = split.val_users if len(val_ratings) else split.train_users
    select_ratings = val_ratings if len(val_ratings) else train_ratings
    val_seed = derive_seed(cfg.seed, "validation")
    stopper = train_overlapping_users(
        generator,
        runner,
        split.train_users,
        trainer,
        batches,
        lam,
        lambda vectors, users: _rating_loss(vectors, users, train_ratings, space.target_items),
        lambda: _val_rmse(runner, select_users.to(device), select_ratings, val_seed),
        "min",
        ckpt_dir,
        report,
    )
    metrics["val_rmse"] = stopper.best
    metrics["stage2_epochs"] = float(stopper.best_epoch + 1)

    # Test (3.3.4, 3.4): cold-start users from noise + their auxiliary vectors.
    test_users = split.test_users.to(device)
    with torch.no_grad():
        vectors = runner.generate(test_users, seed=derive_seed(cfg.seed, "test"))
    num_items = dataset.target.num_items
    unseen = torch.zeros(num_items, dtype=torch.bool)
    unseen[split.unseen_items] = True
    ev = cfg.evaluation
    ks = tuple(sorted(set(ev.ks) | {ev.k}))
    test_metrics, per_user = evaluate_cold_users(
        vectors,
        split.test_users,
        space.target_items,
        seen(split.test_users),
        ~unseen,
        ks=ks,
        k=ev.k,
        batch_size=ev.batch_size,
    )
    metrics.update(test_metrics)
    if split.unseen_items.numel():
        dual, dual_per_user = evaluate_cold_users(
            vectors,
            split.test_users,
            space.target_items,
            split.target_interactions(dataset, split.test_users, "unseen"),
            unseen,
            ks=ks,
            k=ev.k,
            batch_size=ev.batch_size,
            prefix="dual_",
        )
        metrics.update(dual)
        per_user.update(dual_per_user)
    metrics["terminal_snr"] = _terminal_snr(generator)
    _write(run_dir, metrics, per_user)
    save_space_serving(
        run_dir, cfg, dataset, visible.interactions, space, generator, split.test_users, vectors
    )
    return metrics


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

    Generators that read the auxiliary history (PTUPCDR) are not saved for serving new
    cold-start users: the bundle's fold-in gives a vector, not a history.
    """
    from cdr.serving.artifacts import ServingArtifacts, save_artifacts

    target_users = space.target_users.detach().clone()
    target_users[test_users.to(target_users.device)] = vectors.detach()
    servable = not getattr(generator, "uses_history", False) and not isinstance(generator, _Wrapped)
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


def _terminal_snr(generator: Any) -> float:
    schedule = getattr(generator, "schedule", None)
    if schedule is None:
        return math.nan
    return float(schedule.snr(torch.tensor([schedule.num_steps - 1], device=schedule.betas.device)))


def _write(run_dir: Path, metrics: dict[str, float], per_user: dict[str, RankingResult]) -> None:
    write_json(run_dir / METRICS, {k: (None if math.isnan(v) else v) for k, v in metrics.items()})
    for name, result in per_user.items():
        write_table(run_dir / f"per_user_{name}.parquet", {"user": result.users, **result.per_user})
