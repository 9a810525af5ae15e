"""The inductive pipeline (MICRec / INMO protocol): one graph backbone per domain, trained
jointly with BPR + the backbone's own loss (INMO's SE) + an optional cross-domain aligner.

MICRec section 4.3: ``L = (L_BPR^A + L_BPR^B) + beta (L_SE^A + L_SE^B) + gamma L_CL``; beta
lives in the backbone config (``se_weight``), gamma in the aligner's (``weight``); the
``lambda ||Theta||^2`` term is Adam's ``trainer.weight_decay``. Each step samples
``trainer.batch_size`` BPR triples per domain and ``aligner.batch_users`` overlapping users
(users with training edges in both domains), with full propagation of both graphs.
Early stopping on the mean validation NDCG@k of the two domains (training graph only); the
test set is scored once, on the training + new edges (E_new), per inductive slice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import attrs
import torch
from torch import Tensor, nn

from cdr.backbones.aggregation import ModalityFeatures
from cdr.components import BuildContext, EncoderConfig
from cdr.config.experiment import ExperimentConfig
from cdr.container import build_container
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import inductive_split
from cdr.data.store import load_dataset
from cdr.device import resolve_device
from cdr.errors import CompositionError
from cdr.interfaces import Graph, GraphBackbone, Scorer
from cdr.pipelines.backbone_model import (
    DOMAINS,
    DomainData,
    InductiveModel,
    bpr_loss,
    domain_data,
    score_fn,
)
from cdr.pipelines.backbone_training import train_backbones
from cdr.progress import Reporter, null_reporter
from cdr.registry import Registry
from cdr.runs import CHECKPOINTS, write_json
from cdr.seeding import derive_seed, seed_everything

__all__ = ["DOMAINS", "DomainData", "bpr_loss", "domain_data", "run_inductive", "score_fn"]


def _has_images(domain: Domain) -> bool:
    return any(path is not None for path in domain.items.image)


def item_modalities(
    backbone_cfg: Any,
    registry: Registry,
    data: DomainData,
    device: torch.device,
    reporter: Reporter,
    notes: list[str],
) -> ModalityFeatures:
    """Text / image item features for the modality aggregation (MICRec section 4.2).

    The encoders named by the backbone config (``text_encoder`` / ``image_encoder``) run on
    the domain restricted to its training edges. A domain without item images uses text only
    (w = 1), and says so in ``notes``.
    """
    from cdr.encoders.features import compute_features

    visible = attrs.evolve(data.domain, interactions=data.split.train, reviews=None)

    def encode(name: str) -> Tensor:
        config = cast(EncoderConfig, registry.get("encoders", name).config_cls())
        return compute_features(config, registry, visible, "item", device=device, reporter=reporter)

    text = encode(backbone_cfg.text_encoder) if backbone_cfg.text else None
    image = None
    if backbone_cfg.image:
        if _has_images(data.domain):
            image = encode(backbone_cfg.image_encoder)
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
    from cdr.evaluation.inductive import ALL, evaluate_inductive
    from cdr.evaluation.results import flatten

    model.eval()
    reps = model.represent({name: d.full for name, d in data.items()})
    metrics: dict[str, float] = {}
    per_user: dict[str, Any] = {}
    for name, d in data.items():
        u_rep, i_rep = reps[name]
        results = evaluate_inductive(
            score_fn(scorer, u_rep, i_rep),
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


def _build(
    cfg: ExperimentConfig, registry: Registry, dataset: CrossDomainDataset, device: torch.device
) -> tuple[InductiveModel, Scorer]:
    container = build_container(cfg, registry)
    dim = cfg.trainer.dim
    backbones: dict[str, GraphBackbone] = {}
    for name in DOMAINS:
        domain: Domain = getattr(dataset, name)
        ctx = BuildContext(
            dim=dim,
            in_dim=dim,
            num_users=dataset.num_users,
            num_items=domain.num_items,
            device=device,
            seed=derive_seed(cfg.seed, "backbone", name) % 2**31,
        )
        backbone = container.backbone(ctx=ctx)
        if backbone is None or not isinstance(backbone, GraphBackbone):
            raise CompositionError(
                f"backbone {cfg.backbone.kind!r}: the inductive pipeline needs a graph backbone",
                hint="use --backbone inmo (or lightgcn, mf)",
            )
        if not isinstance(backbone, nn.Module):
            raise CompositionError(f"backbone {cfg.backbone.kind!r}: not a trainable nn.Module")
        backbones[name] = backbone
    ctx = BuildContext(
        dim=dim, in_dim=dim, device=device, seed=derive_seed(cfg.seed, "aligner") % 2**31
    )
    aligner = container.aligner(ctx=ctx)
    scorer = cast(Scorer, container.scorer(ctx=ctx))
    return InductiveModel(backbones, aligner).to(device), scorer


def setup_backbones(
    cfg: ExperimentConfig,
    registry: Registry,
    dataset: CrossDomainDataset,
    data: dict[str, DomainData],
    device: torch.device,
    report: Reporter,
) -> tuple[InductiveModel, Scorer, dict[str, DomainData], list[str]]:
    """Build the backbones (+ aligner, scorer), give them their training graphs and item
    modalities, and move the graphs to ``device``. ``notes`` says what was left out."""
    model, scorer = _build(cfg, registry, dataset, device)
    notes: list[str] = []
    for name, d in data.items():
        backbone: Any = model.backbone(name)
        if hasattr(backbone, "prepare"):
            backbone.prepare(
                Graph(d.train.edge_index.to(device), d.train.num_users, d.train.num_items)
            )
        config = getattr(backbone, "config", None)
        if hasattr(backbone, "set_modalities") and getattr(config, "multimodal", False):
            backbone.set_modalities(item_modalities(config, registry, d, device, report, notes))
    on_device = {
        name: attrs.evolve(
            d,
            train=attrs.evolve(d.train, edge_index=d.train.edge_index.to(device)),
            full=attrs.evolve(d.full, edge_index=d.full.edge_index.to(device)),
        )
        for name, d in data.items()
    }
    return model, scorer, on_device, notes


def run_inductive(
    cfg: ExperimentConfig,
    registry: Registry,
    run_dir: Path,
    reporter: Reporter | None = None,
) -> dict[str, float]:
    """Train on E_tr with early stopping on validation, test once on E_tr + E_new; writes
    ``metrics.json``, per-user Parquet, checkpoints and serving artifacts into ``run_dir``."""
    report = reporter or null_reporter
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    dataset = load_dataset(cfg.dataset, registry, reporter=reporter)
    split = inductive_split(dataset, cfg.split)
    data = {name: domain_data(dataset, name, getattr(split, name)) for name in DOMAINS}

    model, scorer, data, notes = setup_backbones(cfg, registry, dataset, data, device, report)
    stopper = train_backbones(
        cfg, model, scorer, data, dataset.num_users, run_dir / CHECKPOINTS, report
    )
    k = cfg.evaluation.k

    metrics, per_user, reps = test(
        model, data, scorer, tuple(cfg.evaluation.ks), cfg.evaluation.batch_size
    )
    metrics["best_epoch"] = float(stopper.best_epoch)
    metrics[f"val_ndcg@{k}"] = float(stopper.best)
    _write(run_dir, metrics, per_user, notes)
    _save_serving(run_dir, dataset, data, reps)
    return metrics


def _write(
    run_dir: Path, metrics: dict[str, float], per_user: dict[str, Any], notes: list[str]
) -> None:
    try:
        from cdr.evaluation.results import write_results
    except ImportError:  # pragma: no cover - the results module belongs to the metrics layer
        write_json(run_dir / "metrics.json", metrics)
    else:
        write_results(run_dir, metrics, per_user)
    if notes:
        write_json(run_dir / "notes.json", {"notes": notes})


def _save_serving(
    run_dir: Path,
    dataset: CrossDomainDataset,
    data: dict[str, DomainData],
    reps: dict[str, tuple[Tensor, Tensor]],
) -> None:
    from cdr.serving.artifacts import ServingArtifacts, save_artifacts

    seen = Interactions.concat([data["target"].split.train, data["target"].split.new])
    save_artifacts(
        run_dir,
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
