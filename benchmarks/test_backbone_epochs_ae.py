"""One training epoch of the NeuMF and Mult-VAE backbones at Amazon-Electronics size (the
graph of ``test_lightgcn.py``: 10k users, 6k items, 75k training edges), through the shared
training step (``training_loss``: ``represent`` of the training graph, then the backbone's
own objective; Adam), and one full ranking of every user.

The step is the pipelines' own: ``trainer.batch_size`` 2048 BPR triples, of which NeuMF
uses (user, positive, negative) plus 3 more negatives (its BCE over 5 pairs per positive)
and Mult-VAE the distinct users (its ELBO over their rows). An epoch is ceil(75k / 2048) =
37 steps, extrapolated from ``STEPS`` measured ones (after one warm-up). ``trainer.dim`` is
64 for both (Mult-VAE: hidden 63, latent 21); Mult-VAE at the paper's width (``dim`` 601:
[600, 200]) is measured too. The full ranking is ``score`` [B, I] for all users in
batches of 1024 (NeuMF's own tower-based scorer; Mult-VAE's dot products), on the
representations of the training graph.

Targets (process CPU s, one thread; see benchmarks/conftest.py) are about 3x the time
measured on this machine (a 3x slowdown fails).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cdr.backbones.multvae import MultVAEBackbone, MultVAEConfig
from cdr.backbones.neumf import NeuMFBackbone
from cdr.data.records import Interactions
from cdr.interfaces import Graph, GraphBackbone
from cdr.pipelines.backbone_model import InductiveModel
from cdr.scorers.dot import DotScorer

sys.path.insert(0, str(Path(__file__).parent))  # the LightGCN benchmark's graph and sizes
from backbone_steps import shared_step
from test_lightgcn import (
    BATCH,
    NUM_EDGES,
    NUM_ITEMS,
    NUM_USERS,
    electronics_sized_graph,
)

DIM = 64
STEPS = 4
STEPS_PER_EPOCH = math.ceil(NUM_EDGES / BATCH)
#: process CPU s of one extrapolated epoch / one full ranking (about 3x measured)
EPOCH_TARGETS = {"neumf": 30.0, "multvae": 60.0, "multvae-601": 300.0}
RANKING_TARGETS = {"neumf": 60.0, "multvae": 10.0}


@pytest.fixture(scope="module")
def train() -> Interactions:
    return electronics_sized_graph()


def build(name: str) -> GraphBackbone:
    if name == "neumf":
        return NeuMFBackbone(NUM_USERS, NUM_ITEMS, DIM, seed=0)
    dim = 601 if name == "multvae-601" else DIM
    return MultVAEBackbone(NUM_USERS, NUM_ITEMS, dim, MultVAEConfig(), seed=0)


def step_fn(backbone: GraphBackbone, train: Interactions) -> Callable[[], float]:
    """One step of the shared training loop on one domain."""
    return shared_step({"target": backbone}, {"target": train}, NUM_USERS, NUM_ITEMS, BATCH)


@pytest.mark.parametrize("name", ["neumf", "multvae", "multvae-601"])
def test_training_epoch(
    name: str, train: Interactions, timer: Callable, figures: Callable[..., None]
) -> None:
    step = step_fn(build(name), train)
    step()  # warm-up: adjacency/rows caches, allocator
    runs = [timer(step) for _ in range(STEPS)]
    cpu = sorted(r[1] for r in runs)[len(runs) // 2]
    wall = sorted(r[0] for r in runs)[len(runs) // 2]
    figures(
        f"{name}/train_epoch_cpu_s",
        f"{name} training epoch through the shared step (10k users, 6k items, 75k edges, "
        f"batch 2048, {STEPS_PER_EPOCH} steps extrapolated from {STEPS})",
        cpu * STEPS_PER_EPOCH,
        "CPU s",
        target=EPOCH_TARGETS[name],
        step_cpu_s=cpu,
        epoch_wall_s_extrapolated=wall * STEPS_PER_EPOCH,
        dim=601 if name == "multvae-601" else DIM,
    )


@pytest.mark.parametrize("name", ["neumf", "multvae"])
def test_full_ranking_all_users(
    name: str, train: Interactions, timer: Callable, figures: Callable[..., None]
) -> None:
    backbone = build(name)
    graph = Graph(train.edge_index, NUM_USERS, NUM_ITEMS)
    backbone.prepare(graph)
    model = InductiveModel({"target": backbone}, None)
    model.eval()
    scorer = model.scorer_for("target", DotScorer())
    with torch.no_grad():
        users, items = backbone.represent(graph)

    def rank() -> None:
        with torch.no_grad():
            for start in range(0, NUM_USERS, 1024):
                scorer.score(users[start : start + 1024], items).topk(20, dim=1)

    wall, cpu = timer(rank)
    figures(
        f"{name}/full_ranking_all_users_cpu_s",
        f"{name}: scores and top-20 of all 10,000 users x 6,000 items (batches of 1024)",
        cpu,
        "CPU s",
        target=RANKING_TARGETS[name],
        wall_s=wall,
    )
