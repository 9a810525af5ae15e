"""The training step the backbone epoch benchmarks time: the pipelines' own
``training_loss`` (``represent`` of the training graph, BPR unless the backbone's objective
is its own, plus ``regularization``) and an Adam step, on one domain or two."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from cdr.data.records import Interactions
from cdr.interfaces import Graph, GraphBackbone
from cdr.pipelines.backbone_model import DomainData, InductiveModel, training_loss
from cdr.pipelines.inductive_sampling import BPRSampler


def shared_step(
    backbones: Mapping[str, GraphBackbone],
    trains: Mapping[str, Interactions],
    num_users: int,
    num_items: int,
    batch: int,
    graphs: Mapping[str, Graph] | None = None,
) -> Callable[[], float]:
    """One step of the shared loop over every domain of ``trains`` (training edges [2, E]);
    ``graphs``: a domain's training graph when it is not just its edges (default: the
    edges on ``num_users`` x ``num_items``). Returns the step; it returns the loss."""
    model = InductiveModel(dict(backbones), None)
    data, samplers = {}, {}
    for domain, train in trains.items():
        graph = (graphs or {}).get(domain) or Graph(train.edge_index, num_users, num_items)
        backbones[domain].prepare(graph)
        data[domain] = DomainData(None, None, graph, graph)  # type: ignore[arg-type]
        samplers[domain] = BPRSampler(train, num_items, torch.Generator().manual_seed(1))
    model.set_epoch(0)  # SGL's views, INMO's alpha (the loop calls it before each epoch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step() -> float:
        batches = {domain: s.sample(batch) for domain, s in samplers.items()}
        loss, _ = training_loss(model, data, batches, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step
