"""IMC-GAE: the encoder against a dense float64 recomputation of the equations, unseen
nodes represented from their new edges without their (untrained) one-hot embeddings, the
layer-wise node dropout, and learning on planted data (above popularity)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from planted_inductive import target_data, train_and_test
from torch import Tensor

import cdr.backbones.imcgae as imcgae
from cdr.backbones.imcgae import IMCGAEBackbone, IMCGAEConfig, layer_dropouts
from cdr.interfaces import Graph

NU, NI, D = 6, 5, 4
# users 0-4 / items 0-3 have training edges; user 5 and item 4 only new edges (E_new)
TRAIN = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 4, 4], [0, 1, 1, 2, 2, 0, 3, 1, 3]])
NEW = torch.tensor([[5, 5, 1, 2], [0, 4, 4, 3]])
FULL = torch.cat([TRAIN, NEW], dim=1)


def model(**overrides: Any) -> IMCGAEBackbone:
    backbone = IMCGAEBackbone(NU, NI, D, IMCGAEConfig(**overrides), seed=3)
    backbone.prepare(Graph(TRAIN, NU, NI))
    return backbone.eval()


def dense_reference(backbone: IMCGAEBackbone, edges: Tensor) -> tuple[Tensor, Tensor]:
    """The module docstring's equations in float64 with a dense adjacency built edge by edge:
    A_hat[u, i] = 1 / sqrt(|N_u| |N_i|); x = o || r || c (o = 0 for nodes without a training
    edge); z = tanh(A_hat x); h = W z + b; sum_l h^l / (l + 1); users times Q."""
    n = NU + NI
    pairs = sorted({(u, i) for u, i in zip(edges[0].tolist(), edges[1].tolist(), strict=True)})
    degree = [0] * n
    for u, i in pairs:
        degree[u] += 1
        degree[NU + i] += 1
    adjacency = torch.zeros(n, n, dtype=torch.float64)
    for u, i in pairs:
        weight = 1.0 / (degree[u] * degree[NU + i]) ** 0.5
        adjacency[u, NU + i] = adjacency[NU + i, u] = weight
    train_nodes = {u for u in TRAIN[0].tolist()} | {NU + i for i in TRAIN[1].tolist()}
    rows = []
    for node in range(n):
        one_hot = backbone.index_emb[node].double() * (1.0 if node in train_nodes else 0.0)
        role = backbone.role_emb[0 if node < NU else 1].double()
        rows.append(torch.cat([one_hot, role, backbone.identical_emb[0].double()]))
    x = torch.stack(rows)
    total = torch.zeros(n, D, dtype=torch.float64)
    for layer, linear in enumerate(backbone.outputs):
        assert isinstance(linear, torch.nn.Linear)
        h = torch.tanh(adjacency @ x) @ linear.weight.double().T + linear.bias.double()
        total = total + h / (layer + 1)
        x = h
    return total[:NU] @ backbone.decoder.double(), total[NU:]


@pytest.mark.parametrize("edges", [TRAIN, FULL], ids=["train", "train+new"])
@pytest.mark.parametrize("layers", [1, 3])
def test_represent_matches_a_dense_float64_recomputation(edges: Tensor, layers: int) -> None:
    backbone = model(num_layers=layers)
    with torch.no_grad():
        users, items = backbone.represent(Graph(edges, NU, NI))
    ref_users, ref_items = dense_reference(backbone, edges)
    torch.testing.assert_close(users.double(), ref_users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items.double(), ref_items, rtol=1e-5, atol=1e-6)


def test_unseen_nodes_come_from_their_new_edges_not_their_one_hot_embeddings() -> None:
    backbone = model()
    with torch.no_grad():
        before = backbone.represent(Graph(FULL, NU, NI))
        backbone.index_emb[NU - 1] += 5.0  # user 5: never trained
        backbone.index_emb[NU + NI - 1] += 5.0  # item 4: never trained
        after = backbone.represent(Graph(FULL, NU, NI))
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        # the new edges make user 5 differ from a node with no edge at all, and follow them
        alone = backbone.represent(Graph(TRAIN, NU, NI))[0][5]
        other = backbone.represent(Graph(torch.cat([TRAIN, NEW[:, 1:2]], 1), NU, NI))[0][5]
    assert not torch.allclose(before[0][5], alone)
    assert not torch.allclose(before[0][5], other)


def test_layer_wise_dropout_rates_follow_the_schedule() -> None:
    assert layer_dropouts(IMCGAEConfig(num_layers=3)) == pytest.approx([0.7, 0.6, 0.5])
    assert layer_dropouts(
        IMCGAEConfig(num_layers=3, node_dropout=0.2, dropout_step=-0.3)
    ) == pytest.approx([0.2, 0.5, 0.8])
    assert layer_dropouts(IMCGAEConfig(num_layers=2, node_dropout=0.05)) == [0.05, 0.0]


def test_node_dropout_silences_whole_nodes_at_each_layers_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In training, the messages a layer propagates are whole rows dropped with p_l (and
    the kept ones scaled by 1 / (1 - p_l)); evaluation drops nothing."""
    n_users, n_items = 1500, 500
    gen = torch.Generator().manual_seed(0)
    edges = torch.stack(
        [
            torch.randint(n_users, (6000,), generator=gen),
            torch.randint(n_items, (6000,), generator=gen),
        ]
    )
    graph = Graph(edges, n_users, n_items)
    backbone = IMCGAEBackbone(n_users, n_items, 8, IMCGAEConfig(node_dropout=0.5), seed=0)
    backbone.prepare(graph)
    seen: list[Tensor] = []
    original = imcgae.sparse_matmul

    def spy(matrix: Tensor, matrix_t: Tensor, x: Tensor) -> Tensor:
        seen.append(x.detach().clone())
        return original(matrix, matrix_t, x)

    monkeypatch.setattr(imcgae, "sparse_matmul", spy)
    activations: list[Tensor] = []  # what each output layer W^l receives: drop(z^l)
    for linear in backbone.outputs:
        linear.register_forward_pre_hook(lambda _, args: activations.append(args[0].detach()))
    torch.manual_seed(0)
    backbone.train()
    backbone.represent(graph)
    inputs = backbone.inputs().detach()
    dropped = [(x.abs().sum(1) == 0).float().mean().item() for x in seen]
    assert dropped == pytest.approx([0.5, 0.4], abs=0.04)  # p_0 = 0.5, p_1 = 0.5 - 0.1
    kept = seen[0].abs().sum(1) > 0
    torch.testing.assert_close(seen[0][kept], inputs[kept] / 0.5)
    # the feature dropout after the activation zeroes single entries at the same rate
    live = [z[z.abs().sum(1) > 0] for z in activations]
    assert [(z == 0).float().mean().item() for z in live] == pytest.approx([0.5, 0.4], abs=0.04)
    seen.clear()
    backbone.eval()
    backbone.represent(graph)
    assert all(bool((x.abs().sum(1) > 0).all()) for x in seen[:1])


@pytest.mark.slow
def test_learns_planted_tastes_above_popularity() -> None:
    dataset, _ = target_data()
    backbone = IMCGAEBackbone(dataset.num_users, dataset.target.num_items, 16, seed=1)
    ours, popularity, _ = train_and_test(backbone, epochs=30, lr=0.01)  # the authors' lr
    assert ours["all-users/all-items"] > popularity["all-users/all-items"]
    assert ours["unseen-users/all-items"] > popularity["unseen-users/all-items"]
    # items unseen in training are ranked from their new edges (popularity scores them 0)
    assert ours["all-users/unseen-items"] > 0.05 > popularity["all-users/unseen-items"]
