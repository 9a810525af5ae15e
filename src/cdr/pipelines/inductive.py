"""The inductive protocol (MICRec / INMO): one graph backbone per domain, trained jointly
with BPR + the backbone's own loss (INMO's SE) + an optional cross-domain aligner.

MICRec section 4.3: ``L = (L_BPR^A + L_BPR^B) + beta (L_SE^A + L_SE^B) + gamma L_CL``; beta
lives in the backbone config (``se_weight``), gamma in the aligner's (``weight``); the
``lambda ||Theta||^2`` term is Adam's ``trainer.weight_decay``. Each step samples
``trainer.batch_size`` BPR triples per domain and ``aligner.batch_users`` overlapping users
(users with training edges in both domains), with full propagation of both graphs.
Early stopping on the mean validation NDCG@k of the two domains (training graph only); the
test set is scored once, on the training + new edges (E_new), per inductive slice.

As a protocol (``protocol``, registered as ``inductive``): backbones (build, prepare,
modalities, train) -> test -> outputs.
"""

from __future__ import annotations

from typing import Any, cast

import attrs
import torch
from torch import Tensor

from cdr.components import EncoderConfig
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import InductiveSplit, inductive_split
from cdr.errors import CompositionError
from cdr.evaluation.inductive import ALL, evaluate_inductive
from cdr.evaluation.references import inductive_popularity
from cdr.evaluation.results import flatten
from cdr.interfaces import Aligner, BackboneTraits, GraphBackbone, ModalityFeatures, Scorer
from cdr.pipelines.backbone_model import (
    DOMAINS,
    DomainData,
    InductiveModel,
    bpr_loss,
    domain_data,
    score_fn,
)
from cdr.pipelines.backbone_training import train_backbones
from cdr.pipelines.context import RunContext, RunState, require, write_outputs
from cdr.protocols import ProtocolSpec, StageSpec
from cdr.seeding import derive_seed

__all__ = ["DOMAINS", "DomainData", "bpr_loss", "domain_data", "protocol", "score_fn"]


def _has_images(domain: Domain) -> bool:
    return any(path is not None for path in domain.items.image)


def item_modalities(
    ctx: RunContext, traits: BackboneTraits, data: DomainData, notes: list[str]
) -> ModalityFeatures:
    """Text / image item features for the modality aggregation (MICRec section 4.2).

    The encoders the backbone's traits name run on the domain restricted to its training
    edges. A domain without item images uses text only (w = 1), and says so in ``notes``.
    """
    from cdr.encoders.features import compute_features

    visible = attrs.evolve(data.domain, interactions=data.split.train, reviews=None)

    def encode(name: str) -> Tensor:
        config = cast(EncoderConfig, ctx.registry.get("encoders", name).config_cls())
        return compute_features(
            config, ctx.registry, visible, "item", device=ctx.device, reporter=ctx.report
        )

    text = encode(traits.text_encoder) if traits.text_encoder is not None else None
    image = None
    if traits.image_encoder is not None:
        if _has_images(data.domain):
            image = encode(traits.image_encoder)
        else:
            notes.append(f"{data.domain.name}: no item images; modality aggregation uses text only")
    return ModalityFeatures(text, image)


@torch.no_grad()
def test(
    model: InductiveModel,
    data: dict[str, DomainData],
    scorer: Scorer,
    ks: tuple[int, ...],
    batch_size: int,
) -> tuple[dict[str, float], dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """Per domain and inductive slice, on the training + new graph: flat metrics
    ``<domain>/<slice>/<metric>`` (the all-users/all-items slice also as
    ``<domain>/<metric>``), the per-user results, and the representations."""
    model.eval()
    reps = model.represent({name: d.full for name, d in data.items()})
    metrics: dict[str, float] = {}
    per_user: dict[str, Any] = {}
    for name, d in data.items():
        u_rep, i_rep = reps[name]
        results = evaluate_inductive(
            score_fn(model.scorer_for(name, scorer), u_rep, i_rep),
            d.split,
            d.train.num_users,
            d.domain.num_items,
            ks=ks,
            batch_size=batch_size,
        )
        prefixed = {f"{name}/{slice_name}": result for slice_name, result in results.items()}
        per_user.update(prefixed)
        metrics.update(flatten(prefixed))
        # the all-users/all-items slice also as <domain>/<metric>
        metrics.update({f"{name}/{k}": v for k, v in results[ALL].summary().items()})
    return metrics, per_user, reps


def build_model(
    ctx: RunContext, domains: tuple[str, ...] = DOMAINS
) -> tuple[InductiveModel, Scorer]:
    """A backbone per domain in ``domains`` (each with its own seed; the target's paired
    with the source's, ``GraphBackbone.pair``), the aligner, the scorer."""
    dataset, cfg = ctx.dataset, ctx.cfg
    backbones: dict[str, GraphBackbone] = {}
    for name in domains:
        domain: Domain = getattr(dataset, name)
        bctx = ctx.build_context(
            num_users=dataset.num_users,
            num_items=domain.num_items,
            seed=derive_seed(cfg.seed, "backbone", name) % 2**31,
        )
        backbones[name] = cast(GraphBackbone, ctx.backbone(bctx))
    if "source" in backbones and "target" in backbones:
        backbones["target"].pair(backbones["source"])  # tie domain-shared parameters
    actx = ctx.build_context(seed=derive_seed(cfg.seed, "aligner") % 2**31)
    aligner = ctx.container.aligner(ctx=actx)
    if aligner is not None and not (
        isinstance(aligner, Aligner) and isinstance(aligner, torch.nn.Module)
    ):
        raise CompositionError(
            f"aligner {cfg.aligner.kind!r}: not an Aligner module (loss, batch_users)"
        )
    scorer = ctx.scorer(actx)
    return InductiveModel(backbones, aligner).to(ctx.device), scorer


def setup_backbones(
    ctx: RunContext, data: dict[str, DomainData]
) -> tuple[InductiveModel, Scorer, dict[str, DomainData], list[str]]:
    """Build the backbones (+ aligner, scorer), give them their training graphs and item
    modalities, and move the graphs to the device. ``notes`` says what was left out."""
    model, scorer = build_model(ctx, tuple(data))
    notes: list[str] = []
    device = ctx.device
    for name, d in data.items():
        backbone = model.backbone(name)
        train = attrs.evolve(d.train, edge_index=d.train.edge_index.to(device))
        backbone.prepare(train)
        if backbone.traits.modalities:
            backbone.set_modalities(item_modalities(ctx, backbone.traits, d, notes))
    on_device = {
        name: attrs.evolve(
            d,
            train=attrs.evolve(d.train, edge_index=d.train.edge_index.to(device)),
            full=attrs.evolve(d.full, edge_index=d.full.edge_index.to(device)),
        )
        for name, d in data.items()
    }
    return model, scorer, on_device, notes


def train_graphs(
    ctx: RunContext, state: RunState, data: dict[str, DomainData], task: str
) -> RunState:
    """Set up and train the backbones on ``data``; the best validation value and epoch."""
    model, scorer, data, notes = setup_backbones(ctx, data)
    result = train_backbones(
        ctx.cfg, model, scorer, data, ctx.dataset.num_users, ctx.checkpoints, ctx.report, task=task
    )
    k = ctx.cfg.evaluation.k
    prefix = "backbone_" if task == "backbones" else ""
    metrics = {f"{prefix}val_ndcg@{k}": float(result.best)}
    if prefix:
        metrics["backbone_epochs"] = float(result.best_epoch + 1)
    else:
        metrics["best_epoch"] = float(result.best_epoch)
    # the budget, so a table can check that no best epoch is in its last 10%
    metrics["epoch_budget"] = float(ctx.cfg.trainer.epochs)
    return state.with_metrics(
        metrics, graphs=data, model=model, scorer=scorer, notes=(*state.notes, *notes)
    )


def backbones(ctx: RunContext, state: RunState) -> RunState:
    """The backbones (+ aligner) on each domain's training edges E_tr."""
    split: InductiveSplit = state.split
    data = {name: domain_data(ctx.dataset, name, getattr(split, name)) for name in DOMAINS}
    return train_graphs(ctx, state, data, "train epoch")


def inductive_test(ctx: RunContext, state: RunState) -> RunState:
    """Every inductive slice of both domains, on E_tr + E_new."""
    model: InductiveModel = require(state.model, "model", "test")
    scorer = require(state.scorer, "scorer", "test")
    ev = ctx.cfg.evaluation
    metrics, per_user, reps = test(model, state.graphs, scorer, tuple(ev.ks), ev.batch_size)
    return state.with_metrics(metrics, per_user={**state.per_user, **per_user}, reps=reps)


def references(ctx: RunContext, state: RunState) -> RunState:
    """Popularity on every slice of both domains, masked as the models are."""
    split: InductiveSplit = state.split
    ev, dataset = ctx.cfg.evaluation, ctx.dataset
    metrics: dict[str, float] = {}
    for name in DOMAINS:
        domain: Domain = getattr(dataset, name)
        metrics.update(
            inductive_popularity(
                getattr(split, name),
                dataset.num_users,
                domain.num_items,
                tuple(ev.ks),
                ev.batch_size,
                name,
            )
        )
    return state.with_metrics(metrics)


def inductive_outputs(ctx: RunContext, state: RunState) -> RunState:
    model: InductiveModel = require(state.model, "model", "outputs")
    if any(model.backbone(name).traits.scoring == "own" for name in model.backbones):
        # a serving bundle ranks by dot products of stored vectors
        note = f"no serving bundle: backbone {ctx.cfg.backbone.kind!r} scores with its own model"
        state = attrs.evolve(state, notes=(*state.notes, note))
        write_outputs(ctx, state)
        return state
    write_outputs(ctx, state)
    save_serving(ctx, ctx.dataset, state.graphs, require(state.reps, "reps", "outputs"))
    return state


def save_serving(
    ctx: RunContext,
    dataset: CrossDomainDataset,
    data: dict[str, DomainData],
    reps: dict[str, tuple[Tensor, Tensor]],
) -> None:
    from cdr.serving.artifacts import ServingArtifacts, save_artifacts

    seen = Interactions.concat([data["target"].split.train, data["target"].split.new])
    save_artifacts(
        ctx.run_dir,
        ServingArtifacts(
            user_ids=dataset.user_ids,
            source_item_ids=dataset.source.item_ids,
            target_item_ids=dataset.target.item_ids,
            source_users=reps["source"][0],
            target_users=reps["target"][0],
            source_items=reps["source"][1],
            target_items=reps["target"][1],
            seen_user=seen.user,
            seen_item=seen.item,
        ),
    )


BACKBONES = StageSpec("backbones", backbones, needs=("split",), gives=("graphs", "model", "scorer"))
TEST = StageSpec("test", inductive_test, needs=("graphs", "model", "scorer"), gives=("reps",))
OUTPUTS = StageSpec("outputs", inductive_outputs, needs=("graphs", "model", "reps"))
REFERENCES = StageSpec("references", references, needs=("split",))

protocol = ProtocolSpec(
    name="inductive",
    split_kind="inductive",
    split=inductive_split,
    generator="no",
    backbone="yes",
    stages=(BACKBONES, TEST, REFERENCES, OUTPUTS),
    summary="MICRec / INMO: graph backbones (+ aligner), unseen users and items via E_new",
    masked_at_validation=("train",),
    masked_at_test=("train", "E_new", "validation"),
)
