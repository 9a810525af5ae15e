"""INMO backbone: template representations (eq. 1), inductive use of new edges, SE loss."""

from __future__ import annotations

import pytest
import torch

from cdr.backbones.aggregation import ModalityFeatures
from cdr.backbones.inmo import INMOBackbone, INMOConfig, alpha_at
from cdr.interfaces import Graph, GraphBackbone

TRAIN = Graph(torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 1, 2]]), num_users=4, num_items=4)


def test_template_representation_matches_equation_1() -> None:
    model = INMOBackbone(4, 4, 3, INMOConfig(num_layers=0, multimodal=False, dropout=0.0), seed=0)
    assert isinstance(model, GraphBackbone)
    with torch.no_grad():
        model.user_bias.fill_(0.5)
        model.item_bias.fill_(-0.25)
    model.prepare(TRAIN)
    model.set_epoch(0)
    alpha = 0.5
    users, items = model.represent(TRAIN)
    e_u, e_i = model.user_emb.detach(), model.item_emb.detach()
    # user 0 -> items {0, 1}: (2 + 1)^-alpha * ((e_0 + b_user) + (e_1 + b_user))
    expected_u0 = 3**-alpha * (e_i[0] + e_i[1] + 2 * 0.5)
    torch.testing.assert_close(users[0], expected_u0)
    # item 1 <- users {0, 1, 2}
    expected_i1 = 4**-alpha * (e_u[0] + e_u[1] + e_u[2] + 3 * -0.25)
    torch.testing.assert_close(items[1], expected_i1)
    # user 3 and item 3 have no edges: zero
    assert users[3].abs().sum() == 0 and items[3].abs().sum() == 0


def test_only_templates_count_and_unseen_nodes_use_new_edges() -> None:
    cfg = INMOConfig(num_layers=2, multimodal=False, template_ranking="degree", template_ratio=0.5)
    model = INMOBackbone(4, 4, 3, cfg, seed=0)
    model.prepare(TRAIN)
    # degree ranking: users 0 and 2 (2 edges each) of 3 trained -> ceil(1.5) = 2 templates
    assert model.user_templates.tolist() == [True, False, True, False]
    # items 0, 1, 2 trained -> 2 templates: item 1 (3 edges), then item 0 (tie with 2: index)
    assert model.item_templates.tolist() == [True, True, False, False]
    model.eval()
    with torch.no_grad():
        before, _ = model.represent(TRAIN)
        full = Graph(torch.cat([TRAIN.edge_index, torch.tensor([[3], [1]])], 1), 4, 4)
        after, _ = model.represent(full)
    assert before[3].abs().sum() == 0
    assert after[3].abs().sum() > 0  # unseen user 3 represented from its new edge, no training


def _dense_inmo_reference(
    model: INMOBackbone,
    edges: list[tuple[int, int]],
    user_templates: list[bool],
    item_templates: list[bool],
    alpha: float,
    num_layers: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """INMO in dense float64, from the parameters alone: eq. 1 template aggregation
    x_u = (|N_u ∩ I_tem| + 1)^-alpha sum_{i in N_u ∩ I_tem} (e_i + b_user) (and x_i from
    template users with b_item), then LightGCN: the mean of layers 0..L of
    D^-1/2 A D^-1/2 over the bipartite graph (duplicate edges once, isolated nodes zero)."""
    e_u, e_i = model.user_emb.detach().double(), model.item_emb.detach().double()
    b_user, b_item = model.user_bias.detach().double(), model.item_bias.detach().double()
    num_users, num_items = e_u.shape[0], e_i.shape[0]
    a = torch.zeros(num_users, num_items, dtype=torch.float64)
    for u, i in edges:
        a[u, i] = 1.0
    to_items = a * torch.tensor(item_templates, dtype=torch.float64)[None, :]  # [U, I]
    to_users = a.T * torch.tensor(user_templates, dtype=torch.float64)[None, :]  # [I, U]
    x_u = (to_items @ (e_i + b_user)) * (to_items.sum(1, keepdim=True) + 1) ** -alpha
    x_i = (to_users @ (e_u + b_item)) * (to_users.sum(1, keepdim=True) + 1) ** -alpha
    n = num_users + num_items
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[:num_users, num_users:] = a
    adj[num_users:, :num_users] = a.T
    degree = adj.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1) ** -0.5, torch.zeros_like(degree))
    a_hat = inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    layer = torch.cat([x_u, x_i])
    total = layer.clone()
    for _ in range(num_layers):
        layer = a_hat @ layer
        total = total + layer
    out = total / (num_layers + 1)
    return out[:num_users], out[num_users:]


@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_represent_matches_dense_float64_reference(num_layers: int) -> None:
    """represent() on a hand graph against eq. 1 + LightGCN recomputed densely in float64:
    degree templates (half of the trained nodes), biases, an annealed alpha, a duplicate
    edge, and at inference new edges of an unseen user (3) and an unseen item (3)."""
    cfg = INMOConfig(
        num_layers=num_layers,
        multimodal=False,
        template_ranking="degree",
        template_ratio=0.5,
        alpha_schedule="geometric",
        alpha_start=0.5,
        alpha_end=1.0,
        alpha_decay=0.5,
    )
    model = INMOBackbone(4, 4, 3, cfg, seed=5)
    with torch.no_grad():
        model.user_bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
        model.item_bias.copy_(torch.tensor([-0.4, 0.25, 0.05]))
    model.prepare(TRAIN)
    model.set_epoch(1)  # alpha = 1 - (1 - 0.5) * 0.5^1
    model.eval()
    # templates by hand (degree, ties by index): users 0, 2 (2 edges); items 1 (3), 0 (1)
    user_tem, item_tem = [True, False, True, False], [True, True, False, False]
    train_edges = [(0, 0), (0, 1), (1, 1), (2, 1), (2, 2)]
    new_edges = [(3, 1), (3, 0), (0, 3), (2, 3), (0, 1)]  # (0, 1) repeats a training edge
    full = Graph(
        torch.cat([TRAIN.edge_index, torch.tensor(new_edges).T], 1), num_users=4, num_items=4
    )
    for graph, edges in ((TRAIN, train_edges), (full, train_edges + new_edges)):
        with torch.no_grad():
            users, items = model.represent(graph)
        ref_u, ref_i = _dense_inmo_reference(model, edges, user_tem, item_tem, 0.75, num_layers)
        torch.testing.assert_close(users.double(), ref_u, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(items.double(), ref_i, rtol=1e-5, atol=1e-6)
    assert ref_u[3].abs().sum() > 0 and ref_i[3].abs().sum() > 0  # the unseen nodes


def test_alpha_is_annealed_from_start_to_end() -> None:
    # the default follows INMO's code: a = 0.99^epoch, exponent 1 - a / 2
    default = INMOConfig()
    for epoch in (0, 1, 20, 69):
        assert alpha_at(default, epoch) == pytest.approx(1 - 0.5 * 0.99**epoch)
    assert alpha_at(default, 20) == pytest.approx(0.591, abs=1e-3)
    cfg = INMOConfig(alpha_start=0.5, alpha_end=1.0, alpha_epochs=10, alpha_schedule="linear")
    assert alpha_at(cfg, 0) == 0.5 and alpha_at(cfg, 5) == pytest.approx(0.75)
    assert alpha_at(cfg, 10) == alpha_at(cfg, 50) == 1.0
    assert alpha_at(INMOConfig(alpha_schedule="constant"), 0) == 1.0
    cos = INMOConfig(alpha_schedule="cosine", alpha_epochs=10)
    assert 0.5 < alpha_at(cos, 5) < 1.0 and alpha_at(cos, 5) == pytest.approx(0.75)


def test_se_loss_is_a_bpr_on_template_embeddings_and_trains() -> None:
    model = INMOBackbone(4, 4, 3, INMOConfig(se_weight=1.0, multimodal=False), seed=0)
    model.prepare(TRAIN)
    users, items = torch.tensor([0, 1]), torch.tensor([[0, 3], [1, 0]])  # item 3: no template
    e_u = model.user_emb[1]
    margin = e_u @ model.se_proj(model.item_emb[1]) - e_u @ model.se_proj(model.item_emb[0])
    # the triple with item 3 is dropped (not a template)
    torch.testing.assert_close(
        model.regularization(TRAIN, users, items), torch.nn.functional.softplus(-margin)
    )
    model.regularization(TRAIN, users, items).backward()
    assert model.se_proj.weight.grad is not None and model.user_emb.grad is not None
    zero = INMOBackbone(4, 4, 3, INMOConfig(se_weight=0.0), seed=0)
    assert zero.regularization(TRAIN, users, items).item() == 0.0


def test_modality_aggregation_changes_representations_and_ablation_switches() -> None:
    gen = torch.Generator().manual_seed(0)
    mods = ModalityFeatures(torch.randn(4, 6, generator=gen), torch.randn(4, 5, generator=gen))
    plain = INMOBackbone(4, 4, 3, INMOConfig(multimodal=False), seed=0)
    mm = INMOBackbone(4, 4, 3, INMOConfig(k=1), seed=0)
    mm.set_modalities(mods)
    assert mm.aggregates and not plain.aggregates
    assert not torch.allclose(mm.represent(TRAIN)[0], plain.represent(TRAIN)[0])
    no_vis = INMOBackbone(4, 4, 3, INMOConfig(image=False), seed=0)
    no_vis.set_modalities(mods)
    assert no_vis.modalities is not None and no_vis.modalities.image is None
    none_left = INMOBackbone(4, 4, 3, INMOConfig(image=False, text=False), seed=0)
    none_left.set_modalities(mods)
    assert not none_left.aggregates


def test_edge_dropout_only_while_training() -> None:
    model = INMOBackbone(4, 4, 3, INMOConfig(dropout=0.5, multimodal=False), seed=0)
    model.prepare(TRAIN)
    model.eval()
    a, b = model.represent(TRAIN)[0], model.represent(TRAIN)[0]
    torch.testing.assert_close(a, b)
    model.train()
    torch.manual_seed(0)
    outs = [model.represent(TRAIN)[0] for _ in range(4)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])
