"""The composed pipeline: a graph backbone (+ aligner) per domain feeds a generator.

``cdr compose --generator ddpm --backbone inmo`` runs this: neither paper's model, both
papers' parts. On the inductive split see ``run_composed_inductive``; on the cold-start
split (MuSiC protocol):

1. Backbones: one per domain, trained jointly (BPR + the backbone's own loss + the aligner
   on overlapping training users), on the auxiliary domain's edges and the target edges of
   training + side users (seen items). Early stopping on a 10% edge hold-out per domain.
2. Frozen representations: auxiliary user vectors f_con, target user vectors x0, item
   vectors of both domains. Ratings are read off the target space as an affine function of
   the dot score, ``r = a <u, v> + b``, fitted by least squares on training users' ratings
   (a BPR-trained space ranks but is not on the rating scale).
3. Generator: stage 1 on side users' target vectors (eq. 11, when the generator config has
   ``side_users``), stage 2 on overlapping training users, lambda * generator loss +
   (1 - lambda) * rating MSE (eq. 12-13, lambda = ``joint_weight``). Selection on validation
   users' NDCG@k only.
4. Test: cold-start users' target vectors generated from their auxiliary vectors; MAE, RMSE
   (calibrated), NDCG@k over all (seen) target items; the dual cold-start table on unseen
   items when the split holds items out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import attrs
import torch
from torch import Tensor, nn

from cdr.components import BuildContext
from cdr.config.experiment import ExperimentConfig
from cdr.container import build_container
from cdr.data.records import CrossDomainDataset, Interactions
from cdr.data.splits import (
    ColdStartSplit,
    DomainInductiveSplit,
    cold_start_split,
    inductive_split,
)
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.errors import CompositionError
from cdr.evaluation.inductive import evaluate_inductive
from cdr.evaluation.ranking import evaluate_ranking
from cdr.evaluation.results import flatten, write_results
from cdr.interfaces import Generator, Graph
from cdr.pipelines.backbone_training import train_backbones
from cdr.pipelines.coldstart import (
    GeneratorRunner,
    TargetSpace,
    _history,
    save_space_serving,
)
from cdr.pipelines.coldstart_eval import evaluate_cold_users
from cdr.pipelines.generator_training import (
    UserBatches,
    train_overlapping_users,
    train_side_users,
)
from cdr.pipelines.inductive import (
    DOMAINS,
    DomainData,
    domain_data,
    score_fn,
    setup_backbones,
    test,
)
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CHECKPOINTS, write_json
from cdr.seeding import derive_seed

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


def calibrate(users: Tensor, items: Tensor, ratings: Interactions) -> tuple[float, float]:
    """Least-squares (a, b) with ``a <u, v> + b ~= rating`` over ``ratings``."""
    dot = (users[ratings.user] * items[ratings.item]).sum(-1).double()
    design = torch.stack([dot, torch.ones_like(dot)], 1)
    solution = torch.linalg.lstsq(design, ratings.rating.double()[:, None]).solution
    return float(solution[0]), float(solution[1])


def calibrated(users: Tensor, items: Tensor, a: float, b: float) -> tuple[Tensor, Tensor]:
    """Vectors whose dot product is ``a <u, v> + b``: [a u, b] and [v, 1]."""
    ones = torch.ones(items.shape[0], 1, device=items.device)
    bias = torch.full((users.shape[0], 1), b, device=users.device)
    return torch.cat([a * users, bias], 1), torch.cat([items, ones], 1)


def run_composed(
    cfg: ExperimentConfig, registry: Registry, run_dir: Path, reporter: Reporter | None = None
) -> dict[str, float]:
    """Train backbones, then the generator on their representations; test cold-start users."""
    if cfg.split.kind == "inductive":
        return run_composed_inductive(cfg, registry, run_dir, reporter)
    report = reporter or null_reporter
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset, registry, reporter=reporter)
    split = cold_start_split(dataset, cfg.split)
    visible = _visible(dataset, split)

    # 1. backbones (+ aligner) on both domains' visible graphs
    data: dict[str, DomainData] = {}
    for name in DOMAINS:
        domain = getattr(dataset, name)
        hold = _holdout_split(visible[name], derive_seed(cfg.seed, "holdout", name))
        full = Interactions.concat([hold.train, hold.val])
        data[name] = DomainData(
            domain,
            hold,
            Graph(hold.train.edge_index, dataset.num_users, domain.num_items),
            Graph(full.edge_index, dataset.num_users, domain.num_items),
        )
    model, scorer, data, notes = setup_backbones(cfg, registry, dataset, data, device, report)
    ckpt_dir = run_dir / CHECKPOINTS
    stopper = train_backbones(
        cfg,
        model,
        scorer,
        data,
        dataset.num_users,
        ckpt_dir,
        report,
        task="backbones",
    )
    metrics: dict[str, float] = {
        f"backbone_val_ndcg@{cfg.evaluation.k}": float(stopper.best),
        "backbone_epochs": float(stopper.best_epoch + 1),
    }

    # 2. frozen representations on the full visible graphs, and the rating calibration
    with torch.no_grad():
        reps = {name: model.backbone(name).represent(d.full) for name, d in data.items()}
    space = TargetSpace(
        target_users=reps["target"][0].detach(),
        source_users=reps["source"][0].detach(),
        target_items=reps["target"][1].detach(),
        source_items=reps["source"][1].detach(),
    )
    train_ratings = split.target_interactions(dataset, split.train_users, "seen")
    a, b = calibrate(space.target_users.cpu(), space.target_items.cpu(), train_ratings)
    metrics["calibration_a"], metrics["calibration_b"] = a, b

    # 3. the generator: stage 1 side users, stage 2 overlapping training users
    val_users = split.val_users if split.val_users.numel() else split.train_users
    generator, runner, gen_metrics = train_generator(
        cfg,
        registry,
        dataset.num_users,
        dataset.target.num_items,
        space,
        dataset.source.interactions,
        train_ratings,
        (a, b),
        split.side_users,
        split.train_users,
        val_users,
        split.target_interactions(dataset, val_users, "seen"),
        None,
        ckpt_dir,
        device,
        report,
    )
    metrics.update(gen_metrics)
    k = cfg.evaluation.k
    items_cal = space.target_items

    # 4. test: cold-start users generated from their auxiliary vectors
    with torch.no_grad():
        vectors = runner.generate(split.test_users.to(device), seed=derive_seed(cfg.seed, "test"))
    users_cal, items_aug = calibrated(vectors, items_cal, a, b)
    unseen = torch.zeros(dataset.target.num_items, dtype=torch.bool)
    unseen[split.unseen_items] = True
    ks = tuple(sorted(set(cfg.evaluation.ks) | {k}))
    test_metrics, per_user = evaluate_cold_users(
        users_cal,
        split.test_users,
        items_aug,
        split.target_interactions(dataset, split.test_users, "seen"),
        ~unseen,
        ks=ks,
        k=k,
        batch_size=cfg.evaluation.batch_size,
    )
    metrics.update(test_metrics)
    if split.unseen_items.numel():
        dual, dual_per_user = evaluate_cold_users(
            users_cal,
            split.test_users,
            items_aug,
            split.target_interactions(dataset, split.test_users, "unseen"),
            unseen,
            ks=ks,
            k=k,
            batch_size=cfg.evaluation.batch_size,
            prefix="dual_",
        )
        metrics.update(dual)
        per_user.update(dual_per_user)
    write_results(run_dir, {k_: v for k_, v in metrics.items() if not math.isnan(v)}, per_user)
    if notes:
        write_json(run_dir / "notes.json", {"notes": notes})

    # serving: known users keep their backbone target vectors; cold users get generated ones
    save_space_serving(
        run_dir, cfg, dataset, visible["target"], space, generator, split.test_users, vectors
    )
    return metrics


def train_generator(
    cfg: ExperimentConfig,
    registry: Registry,
    num_users: int,
    num_items: int,
    space: TargetSpace,
    source_history: Interactions,
    train_ratings: Interactions,
    calibration: tuple[float, float],
    side_users: Tensor,
    train_users: Tensor,
    val_users: Tensor,
    val_relevant: Interactions,
    val_exclude: Interactions | None,
    checkpoints: Path | None,
    device: torch.device,
    report: Reporter,
) -> tuple[nn.Module, GeneratorRunner, dict[str, float]]:
    """Build the configured generator on the frozen ``space`` and train its two stages;
    selection on the validation users' NDCG@k of generated vectors (graded gains)."""
    dim = space.target_users.shape[1]
    container = build_container(cfg, registry)
    ctx = BuildContext(
        dim=dim,
        in_dim=dim,
        num_users=num_users,
        num_items=num_items,
        device=device,
        seed=cfg.seed,
    )
    built = container.generator(ctx=ctx)
    if not isinstance(built, Generator):
        raise CompositionError(f"generator {cfg.generator.kind!r}: not a Generator")
    generator = cast(nn.Module, built)
    runner = GeneratorRunner(generator, space, _history(source_history, num_users, device))
    trainer = cfg.trainer
    lam = float(getattr(cfg.generator, "joint_weight", 1.0))
    use_side = bool(getattr(cfg.generator, "side_users", getattr(generator, "side_users", False)))
    batches = UserBatches(trainer.batch_size, derive_seed(cfg.seed, "generator"), device)
    items = space.target_items
    a, b = calibration
    ratings = Interactions(*(t.to(device) for t in attrs.astuple(train_ratings, recurse=False)))

    def rating_loss(vectors: Tensor, users: Tensor) -> Tensor:
        """MSE of calibrated ratings a <u, v> + b of generated vectors (eq. 12)."""
        row = torch.full((num_users,), -1, dtype=torch.long, device=device)
        row[users] = torch.arange(users.numel(), device=device)
        part = ratings.select(row[ratings.user] >= 0)
        if len(part) == 0:
            return vectors.sum() * 0.0
        pred = a * (vectors[row[part.user]] * items[part.item]).sum(-1) + b
        return torch.nn.functional.mse_loss(pred, part.rating.float())

    if use_side:
        train_side_users(
            generator,
            runner,
            side_users,
            trainer,
            batches,
            report,
            checkpoints,
            "generator stage 1: side users",
        )
    k = cfg.evaluation.k

    def val_ndcg() -> float:
        with torch.no_grad():
            vectors = runner.generate(val_users.to(device), seed=derive_seed(cfg.seed, "val"))
        row = torch.full((num_users,), -1, dtype=torch.long)
        row[val_users] = torch.arange(val_users.numel())
        result = evaluate_ranking(
            lambda batch: (vectors[row[batch].to(device)] @ items.T).cpu(),
            val_users,
            num_items,
            val_relevant,
            val_exclude,
            ks=(k,),
            graded=True,
            batch_size=cfg.evaluation.batch_size,
        )
        return result.summary().get(f"ndcg@{k}", 0.0) if len(result) else 0.0

    selector = train_overlapping_users(
        generator,
        runner,
        train_users,
        trainer,
        batches,
        lam,
        rating_loss,
        val_ndcg,
        "max",
        checkpoints,
        report,
        "generator stage 2: overlapping users",
    )
    metrics = {f"val_ndcg@{k}": selector.best, "generator_epochs": float(selector.best_epoch + 1)}
    return generator, runner, metrics


def run_composed_inductive(
    cfg: ExperimentConfig, registry: Registry, run_dir: Path, reporter: Reporter | None = None
) -> dict[str, float]:
    """The composition on MICRec's inductive protocol.

    The backbones (+ aligner) train as in the inductive pipeline and are tested on every
    inductive slice (``target/...``, ``source/...``). The generator then learns, on users
    with training edges in both domains, to map a user's auxiliary representation to the
    target one; at test, users unseen in the target domain who have auxiliary edges get the
    generated target vector instead of the backbone's (from E_new), scored on the same
    slices as ``generated/target/...``.
    """
    report = reporter or null_reporter
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    dataset = load_dataset(cfg.dataset, registry, reporter=reporter)
    split = inductive_split(dataset, cfg.split)
    data = {name: domain_data(dataset, name, getattr(split, name)) for name in DOMAINS}
    model, scorer, data, notes = setup_backbones(cfg, registry, dataset, data, device, report)
    ckpt_dir = run_dir / CHECKPOINTS
    stopper = train_backbones(
        cfg,
        model,
        scorer,
        data,
        dataset.num_users,
        ckpt_dir,
        report,
        task="backbones",
    )
    ks, batch = tuple(cfg.evaluation.ks), cfg.evaluation.batch_size
    metrics, per_user, reps = test(model, data, scorer, ks, batch)
    k = cfg.evaluation.k
    metrics[f"backbone_val_ndcg@{k}"] = float(stopper.best)

    # the generator on the training-graph representations
    with torch.no_grad():
        train_reps = model.represent({name: d.train for name, d in data.items()})
    space = TargetSpace(
        target_users=train_reps["target"][0].detach(),
        source_users=train_reps["source"][0].detach(),
        target_items=train_reps["target"][1].detach(),
        source_items=train_reps["source"][1].detach(),
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
    order = torch.randperm(anchors.numel(), generator=torch.Generator().manual_seed(cfg.seed))
    cut = max(1, round(0.1 * anchors.numel()))
    val_users, train_users = anchors[order[:cut]].sort().values, anchors[order[cut:]].sort().values
    calibration = calibrate(space.target_users.cpu(), space.target_items.cpu(), target_train)
    generator, _, gen_metrics = train_generator(
        cfg,
        registry,
        dataset.num_users,
        dataset.target.num_items,
        space,
        source_train,
        target_train.of_users(train_users, dataset.num_users),
        calibration,
        side,
        train_users,
        val_users,
        split.target.val.of_users(val_users, dataset.num_users),
        target_train,
        ckpt_dir,
        device,
        report,
    )
    metrics.update(gen_metrics)

    # test: unseen target users with auxiliary edges get generated vectors (full graph reps)
    full_space = attrs.evolve(space, source_users=reps["source"][0].detach())
    source_full = Interactions.concat([source_train, split.source.new])
    runner = GeneratorRunner(
        generator, full_space, _history(source_full, dataset.num_users, device)
    )
    has_source = torch.zeros(dataset.num_users, dtype=torch.bool)
    has_source[source_full.user] = True
    cold = split.target.unseen_users[has_source[split.target.unseen_users]]
    target_users = reps["target"][0].detach().clone()
    if cold.numel():
        with torch.no_grad():
            target_users[cold.to(device)] = runner.generate(
                cold.to(device), seed=derive_seed(cfg.seed, "test")
            )
    results = evaluate_inductive(
        score_fn(scorer, target_users, reps["target"][1]),
        split.target,
        dataset.num_users,
        dataset.target.num_items,
        ks=ks,
        batch_size=batch,
    )
    generated = {f"generated/target/{name}": result for name, result in results.items()}
    per_user.update(generated)
    metrics.update(flatten(generated))
    metrics["generated_users"] = float(cold.numel())
    write_results(run_dir, {k_: v for k_, v in metrics.items() if not math.isnan(v)}, per_user)
    if notes:
        write_json(run_dir / "notes.json", {"notes": notes})
    return metrics
