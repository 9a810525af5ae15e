"""A small inductive experiment on planted synthetic data, for the backbones' "learns" tests.

The embedded synthetic provider's planted model (user tastes x item topics + item bias),
cut by the inductive split (20% unseen users and items, their edges E_new revealed at
test); one backbone is trained on the target domain through the shared loop
(``train_backbones``: BPR triples, early stopping on validation NDCG) and tested by the
inductive pipeline's own ``test`` on the training + new edges, next to the popularity
reference evaluated on the same slices and masks.
"""

from __future__ import annotations

from functools import cache

import attrs
import torch

from cdr.config.experiment import EvaluationConfig, ExperimentConfig, SplitConfig, TrainerConfig
from cdr.config.loading import load_experiment
from cdr.data.records import CrossDomainDataset
from cdr.data.splits import InductiveSplit, inductive_split
from cdr.data.synthetic import SyntheticConfig, generate
from cdr.evaluation.references import inductive_popularity
from cdr.interfaces import GraphBackbone
from cdr.pipelines.backbone_model import DomainData, InductiveModel, domain_data
from cdr.pipelines.backbone_training import train_backbones
from cdr.pipelines.inductive import test
from cdr.progress import null_reporter
from cdr.scorers.dot import DotScorer

SLICES = ("all-users/all-items", "unseen-users/all-items", "all-users/unseen-items")


@cache
def planted() -> tuple[CrossDomainDataset, InductiveSplit]:
    """600 users, 100 target items, ~25 interactions per active user (dense enough that
    matrix factorisation is above popularity), no images."""
    data_cfg = SyntheticConfig(
        size="tiny",
        num_users=600,
        source_items=20,
        target_items=100,
        interactions_per_user=25.0,
        images=False,
    )
    dataset, _ = generate(data_cfg)
    split_cfg = SplitConfig(kind="inductive", unseen_item_fraction=0.2)
    return dataset, inductive_split(dataset, split_cfg)


def target_data() -> tuple[CrossDomainDataset, DomainData]:
    dataset, split = planted()
    return dataset, domain_data(dataset, "target", split.target)


@cache
def base_config() -> ExperimentConfig:
    from cdr.registry import Registry

    components = {"generator": "none", "backbone": "none", "aligner": "none"}
    return load_experiment(None, Registry(), ["device=cpu"], components)


def train_and_test(
    backbone: GraphBackbone, *, epochs: int, lr: float, dim: int = 16, patience: int = 10
) -> tuple[dict[str, float], dict[str, float], InductiveModel]:
    """Train ``backbone`` (built for the target domain with ``dim``) and test it: NDCG@20 of
    the model and of popularity per slice in ``SLICES``, and the trained model."""
    dataset, data = target_data()
    cfg = attrs.evolve(
        base_config(),
        trainer=TrainerConfig(epochs=epochs, lr=lr, dim=dim, batch_size=256, patience=patience),
        evaluation=EvaluationConfig(ks=(20,)),
    )
    backbone.prepare(data.train)
    model = InductiveModel({"target": backbone}, None)
    scorer = DotScorer()
    torch.manual_seed(0)  # dropout / key sampling draws from the global RNG
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster on a shared machine
    try:
        train_backbones(
            cfg, model, scorer, {"target": data}, dataset.num_users, None, null_reporter
        )
        metrics, _, _ = test(model, {"target": data}, scorer, (20,), 1024)
    finally:
        torch.set_num_threads(threads)
    popularity = inductive_popularity(
        data.split, dataset.num_users, dataset.target.num_items, (20,), 1024, "target"
    )
    ours = {s: metrics[f"target/{s}/ndcg@20"] for s in SLICES}
    pop = {s: popularity[f"ref/popularity/target/{s}/ndcg@20"] for s in SLICES}
    return ours, pop, model
