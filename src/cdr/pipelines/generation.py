"""The generator's part of a protocol (MuSiC 3.3-3.4), shared by the cold-start and the
composed protocols: build the generator, stage 1 on side users, stage 2 on overlapping
training users. What differs between protocols comes in through the state: the frozen
``TargetSpace`` the generator works in, the ``GeneratorUsers`` (who trains, who selects)
and the ``Scorer`` that reads ratings and rankings off the space.

Stage 1 (eq. 11): the unconditional loss on side users' target vectors, when the
generator's ``traits.side_users``.
Stage 2 (eq. 12-13): ``lambda * conditional loss + (1 - lambda) * rating MSE`` of generated
vectors on training users (lambda = ``traits.joint_weight``); selection on the validation
users only, by RMSE (cold-start) or NDCG@k (composed). Both run through the shared loop
(``cdr.training.loop``) as the checkpointed stages ``stage1`` and ``stage2``.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.data.records import Interactions
from cdr.evaluation.ranking import evaluate_ranking
from cdr.interfaces import Generator, History, Scorer
from cdr.pipelines.context import RunContext, RunState, require
from cdr.protocols import StageSpec
from cdr.seeding import derive_seed
from cdr.training.loop import Budget, FitResult, Stage, fit

#: most recent auxiliary items kept per user for history-based generators (PTUPCDR)
MAX_HISTORY = 50

Selection = Literal["rmse", "ndcg"]


@attrs.frozen(eq=False)
class TargetSpace:
    """Frozen vectors the generator works in: users of both domains [U, D], items [I, D]."""

    target_users: Tensor
    source_users: Tensor
    target_items: Tensor
    source_items: Tensor


@attrs.frozen(eq=False)
class GeneratorUsers:
    """Who the generator learns from and is selected on.

    side [S]: stage 1 users (target vectors only); train [N]: stage 2 users;
    val [V]: selection users; train_ratings / val_ratings: their target ratings (the rating
    loss; the selection metric's relevant items); val_exclude: edges masked when ranking
    for selection (None: none); history: the auxiliary interactions histories come from.
    """

    side: Tensor
    train: Tensor
    val: Tensor
    train_ratings: Interactions
    val_ratings: Interactions
    val_exclude: Interactions | None
    history: Interactions


def history_table(
    source: Interactions, num_users: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Padded most-recent auxiliary items per user: items [U, L] (-1 = pad) and mask [U, L]."""
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
    """Calls a generator on users of a space, with their auxiliary history when the
    generator's ``traits.uses_history``."""

    def __init__(self, generator: Generator, space: TargetSpace, history: tuple[Tensor, Tensor]):
        self.generator = generator
        self.space = space
        self.uses_history = generator.traits.uses_history
        self.table, self.mask = history

    def history(self, users: Tensor) -> History | None:
        if not self.uses_history:
            return None
        idx = self.table[users]
        items = self.space.source_items[idx.clamp_min(0)]  # [B, L, D]
        return History(items, self.mask[users])

    def loss(self, users: Tensor, conditional: bool) -> Tensor:
        target = self.space.target_users[users]
        if not conditional:
            return self.generator.loss(target, None)
        cond = self.space.source_users[users]
        return self.generator.loss(target, cond, self.history(users))

    def generate(self, users: Tensor, seed: int | None = None) -> Tensor:
        cond = self.space.source_users[users]
        return self.generator.generate(cond, history=self.history(users), seed=seed)


class UserBatches:
    """Shuffled batches of user ids, from one seeded generator (CPU), moved to ``device``."""

    def __init__(self, batch_size: int, seed: int, device: torch.device) -> None:
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, users: Tensor) -> list[Tensor]:
        perm = users[torch.randperm(users.numel(), generator=self.generator)]
        return [
            perm[s : s + self.batch_size].to(self.device)
            for s in range(0, perm.numel(), self.batch_size)
        ]


@attrs.frozen(eq=False)
class Generation:
    """The generator of a run and what its stages share: its batches (one seeded stream
    across stages 1 and 2); ``runner`` once the space exists."""

    generator: nn.Module
    batches: UserBatches
    runner: GeneratorRunner | None = None

    @property
    def module(self) -> Generator:
        generator: Generator = self.generator  # type: ignore[assignment]
        return generator


def rating_loss(
    scorer: Scorer, vectors: Tensor, users: Tensor, ratings: Interactions, items: Tensor
) -> Tensor:
    """eq. 12: MSE of ``scorer.rate`` over the ratings of ``users`` (rows of ``vectors``
    [B, D]); items [I, D]; 0 when those users have no ratings."""
    if len(ratings) == 0:
        return vectors.sum() * 0.0
    size = max(int(users.max()), int(ratings.user.max())) + 1
    row = torch.full((size,), -1, dtype=torch.long, device=users.device)
    row[users] = torch.arange(users.numel(), device=users.device)
    part = ratings.select(row[ratings.user] >= 0)
    if len(part) == 0:
        return vectors.sum() * 0.0
    pred = scorer.rate(vectors[row[part.user]], items[part.item])
    return F.mse_loss(pred, part.rating.float())


def _to(inter: Interactions, device: torch.device) -> Interactions:
    return Interactions(
        inter.user.to(device),
        inter.item.to(device),
        inter.rating.float().to(device),
        inter.timestamp.to(device),
    )


# -- stages --------------------------------------------------------------------------------


def build_generator(ctx: RunContext, state: RunState) -> RunState:
    """The configured generator, at the target space's width; its batch stream."""
    dim = ctx.cfg.trainer.dim
    generator = ctx.generator(
        ctx.build_context(
            dim=dim,
            in_dim=dim,
            num_users=ctx.dataset.num_users,
            num_items=ctx.dataset.target.num_items,
        )
    )
    batches = UserBatches(
        ctx.cfg.trainer.batch_size, derive_seed(ctx.cfg.seed, "generator"), ctx.device
    )
    return attrs.evolve(state, generation=Generation(generator, batches))


def _generation(state: RunState, stage: str) -> Generation:
    generation: Generation = require(state.generation, "generation", stage)
    return generation


def make_runner(ctx: RunContext, state: RunState) -> RunState:
    """The generator over the run's space, with the auxiliary histories it may read."""
    generation = _generation(state, "runner")
    space: TargetSpace = require(state.space, "space", "runner")
    users: GeneratorUsers = require(state.gen_users, "gen_users", "runner")
    history = history_table(users.history, ctx.dataset.num_users, ctx.device)
    runner = GeneratorRunner(generation.module, space, history)
    return attrs.evolve(state, generation=attrs.evolve(generation, runner=runner))


def side_users(ctx: RunContext, state: RunState) -> RunState:
    """Stage 1 (eq. 11), when the generator learns from side users."""
    generation = _generation(state, "stage 1")
    users: GeneratorUsers = require(state.gen_users, "gen_users", "stage 1")
    runner = require(generation.runner, "generation.runner", "stage 1")
    params = [p for p in generation.generator.parameters() if p.requires_grad]
    if not generation.module.traits.side_users or not params or users.side.numel() == 0:
        return state
    trainer = ctx.cfg.trainer
    stage: Stage[Tensor] = Stage(
        name="stage1",
        module=generation.generator,
        optimizer=torch.optim.Adam(params, lr=trainer.lr, weight_decay=trainer.weight_decay),
        batches=lambda _: generation.batches(users.side),
        loss=lambda batch: runner.loss(batch, conditional=False),
        budget=Budget(trainer.stage_epochs(1)),
        generators={"batches": generation.batches.generator},
        task=_task(ctx, "stage 1: side users"),
    )
    fit(stage, ctx.checkpoints, ctx.report)
    return state


def _task(ctx: RunContext, name: str) -> str:
    return f"generator {name}" if ctx.cfg.backbone.kind != "none" else name


def overlapping_users(select: Selection) -> StageSpec:
    """Stage 2 (eq. 12-13) with selection by validation ``select`` (RMSE or NDCG@k)."""

    def run(ctx: RunContext, state: RunState) -> RunState:
        generation = _generation(state, "stage 2")
        users: GeneratorUsers = require(state.gen_users, "gen_users", "stage 2")
        runner = require(generation.runner, "generation.runner", "stage 2")
        scorer = require(state.scorer, "scorer", "stage 2")
        space = runner.space
        trainer, device = ctx.cfg.trainer, ctx.device
        train_ratings = _to(users.train_ratings, device)
        val_ratings = _to(users.val_ratings, device)
        lam = generation.module.traits.joint_weight
        val_seed = derive_seed(ctx.cfg.seed, "validation" if select == "rmse" else "val")
        k = ctx.cfg.evaluation.k

        def loss(batch: Tensor) -> Tensor:
            total = torch.zeros((), device=batch.device)
            if lam > 0:
                total = total + lam * runner.loss(batch, conditional=True)
            if lam < 1:
                vectors = runner.generate(batch)
                total = total + (1 - lam) * rating_loss(
                    scorer, vectors, batch, train_ratings, space.target_items
                )
            return total

        def val_rmse() -> float:
            val_users = users.val.to(device)
            vectors = runner.generate(val_users, seed=val_seed)
            error = rating_loss(scorer, vectors, val_users, val_ratings, space.target_items)
            return float(error.sqrt())

        def val_ndcg() -> float:
            vectors = runner.generate(users.val.to(device), seed=val_seed)
            row = torch.full((ctx.dataset.num_users,), -1, dtype=torch.long)
            row[users.val] = torch.arange(users.val.numel())
            result = evaluate_ranking(
                lambda batch: scorer.score(
                    vectors[row[batch].to(device)], space.target_items
                ).cpu(),
                users.val,
                ctx.dataset.target.num_items,
                users.val_ratings,
                users.val_exclude,
                ks=(k,),
                graded=True,
                batch_size=ctx.cfg.evaluation.batch_size,
            )
            return result.summary().get(f"ndcg@{k}", 0.0) if len(result) else 0.0

        validate = val_rmse if select == "rmse" else val_ndcg
        params = [p for p in generation.generator.parameters() if p.requires_grad]
        if not params:
            generation.generator.eval()
            with torch.no_grad():
                result = FitResult(validate(), 0, 0)
        else:
            stage: Stage[Tensor] = Stage(
                name="stage2",
                module=generation.generator,
                optimizer=torch.optim.Adam(
                    params, lr=trainer.lr, weight_decay=trainer.weight_decay
                ),
                batches=lambda _: generation.batches(users.train),
                loss=loss,
                budget=Budget(
                    trainer.stage_epochs(2),
                    trainer.eval_every,
                    trainer.patience,
                    "min" if select == "rmse" else "max",
                ),
                validate=validate,
                generators={"batches": generation.batches.generator},
                task=_task(ctx, "stage 2: overlapping users"),
            )
            result = fit(stage, ctx.checkpoints, ctx.report)
        if select == "rmse":
            metrics = {"val_rmse": result.best, "stage2_epochs": float(result.best_epoch + 1)}
        else:
            metrics = {
                f"val_ndcg@{k}": result.best,
                "generator_epochs": float(result.best_epoch + 1),
            }
        # the budget, so a table can check no stage's best epoch is in its last 10%
        metrics["stage2_budget"] = float(trainer.stage_epochs(2))
        return state.with_metrics(metrics)

    return StageSpec(f"stage 2 (select by {select})", run, needs=("runner", "gen_users", "scorer"))


BUILD = StageSpec("generator", build_generator, gives=("generation",))
RUNNER = StageSpec(
    "generator runner", make_runner, needs=("generation", "space", "gen_users"), gives=("runner",)
)
SIDE = StageSpec("stage 1: side users", side_users, needs=("runner", "gen_users"))
