"""Tests that kill surviving mutants of cdr.backbones (docs/testing.md): LightGCN's L2 term
and initialisations, the components' build plumbing, INMO's alpha schedules, initial state
and SE loss with drawn negatives, unseen-node filling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cdr.backbones import inmo, lightgcn, sgl
from cdr.backbones.inmo import INMOBackbone, INMOConfig, alpha_at
from cdr.backbones.lightgcn import LightGCNBackbone, LightGCNConfig, fill_unseen, propagate
from cdr.backbones.sgl import SGLBackbone, SGLConfig
from cdr.components import BuildContext
from cdr.interfaces import Graph
from cdr.seeding import derive_seed

TRAIN = Graph(torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 1, 2]]), num_users=4, num_items=4)


def test_lightgcn_l2_is_reg_weight_times_batch_mean_of_squared_norms() -> None:
    model = LightGCNBackbone(4, 5, 3, reg_weight=0.5, seed=1)
    users, items = torch.tensor([0, 2, 2]), torch.tensor([[1, 4], [0, 3], [2, 2]])
    e_u, e_i = model.user_emb.detach(), model.item_emb.detach()
    squares = sum(float(e_u[u].square().sum()) for u in users.tolist()) + sum(
        float(e_i[i].square().sum()) for row in items.tolist() for i in row
    )
    loss = model.regularization(TRAIN, users, items)
    assert float(loss.detach()) == pytest.approx(0.5 * squares / 3, rel=1e-6)
    loss.backward()
    assert model.user_emb.grad is not None
    torch.testing.assert_close(model.user_emb.grad[0], 0.5 * 2 * e_u[0] / 3)
    zero = LightGCNBackbone(4, 5, 3, reg_weight=0.0).regularization(TRAIN, users, items)
    assert float(zero) == 0.0
    empty = model.regularization(TRAIN, users[:0], items[:0])
    assert float(empty) == 0.0 and empty.shape == ()


def test_lightgcn_initialisations_are_the_seeded_draws() -> None:
    model = LightGCNBackbone(4, 5, 3)  # defaults: 3 layers, N(0, 0.1), seed 0
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(model.user_emb.detach(), torch.randn(4, 3, generator=gen) * 0.1)
    torch.testing.assert_close(model.item_emb.detach(), torch.randn(5, 3, generator=gen) * 0.1)
    assert model.num_layers == 3 and model.reg_weight == 0.0
    wide = LightGCNBackbone(4, 5, 3, 2, 0.5, seed=7)
    gen = torch.Generator().manual_seed(7)
    torch.testing.assert_close(wide.user_emb.detach(), torch.randn(4, 3, generator=gen) * 0.5)
    torch.testing.assert_close(wide.item_emb.detach(), torch.randn(5, 3, generator=gen) * 0.5)
    xavier = LightGCNBackbone(4, 5, 3, init="xavier", seed=7)
    gen = torch.Generator().manual_seed(7)
    user = nn.init.xavier_uniform_(torch.empty(4, 3), generator=gen)
    item = nn.init.xavier_uniform_(torch.empty(5, 3), generator=gen)
    torch.testing.assert_close(xavier.user_emb.detach(), user)
    torch.testing.assert_close(xavier.item_emb.detach(), item)


def test_lightgcn_build_passes_every_setting() -> None:
    cfg = LightGCNConfig(num_layers=1, init_std=0.3, init="normal", reg_weight=0.25)
    ctx = BuildContext(dim=6, num_users=7, num_items=9, seed=3)
    built = lightgcn.component.build(cfg, ctx)
    direct = LightGCNBackbone(7, 9, 6, 1, 0.3, reg_weight=0.25, seed=3)
    assert built.user_emb.shape == (7, 6) and built.item_emb.shape == (9, 6)
    assert built.num_layers == 1 and built.reg_weight == 0.25
    torch.testing.assert_close(built.user_emb, direct.user_emb)
    torch.testing.assert_close(built.item_emb, direct.item_emb)
    xavier = lightgcn.component.build(LightGCNConfig(init="xavier"), ctx)
    torch.testing.assert_close(
        xavier.user_emb, LightGCNBackbone(7, 9, 6, init="xavier", seed=3).user_emb
    )


def test_lightgcn_prepares_on_first_represent_with_seen_users_and_items() -> None:
    graph = Graph(torch.tensor([[0, 0, 3], [1, 4, 1]]), num_users=4, num_items=5)
    model = LightGCNBackbone(4, 5, 3, num_layers=0).eval()
    assert not model.prepared
    users, items = model.represent(graph)  # prepare(graph) runs first
    assert model.prepared
    assert model.seen_users.tolist() == [True, False, False, True]
    assert model.seen_items.tolist() == [False, True, False, False, True]
    mean_user = model.user_emb.detach()[[0, 3]].mean(0)
    torch.testing.assert_close(users[1], mean_user)
    torch.testing.assert_close(items[0], model.item_emb.detach()[[1, 4]].mean(0))


def test_fill_unseen_keeps_all_seen_and_none_seen() -> None:
    emb = torch.randn(3, 2)
    assert fill_unseen(emb, torch.ones(3, dtype=torch.bool)) is emb
    assert fill_unseen(emb, torch.zeros(3, dtype=torch.bool)) is emb
    filled = fill_unseen(emb, torch.tensor([True, False, True]))
    torch.testing.assert_close(filled[1], emb[[0, 2]].mean(0))


def test_inmo_build_passes_every_setting() -> None:
    cfg = INMOConfig(num_layers=1, multimodal=False, init_std=0.2)
    ctx = BuildContext(dim=5, num_users=6, num_items=7, seed=4)
    built = inmo.component.build(cfg, ctx)
    direct = INMOBackbone(6, 7, 5, cfg, seed=4)
    assert built.config is cfg and built.num_users == 6 and built.num_items == 7
    assert built.seed == 4
    torch.testing.assert_close(built.user_emb, direct.user_emb)
    torch.testing.assert_close(built.item_emb, direct.item_emb)
    torch.testing.assert_close(built.se_proj.weight, direct.se_proj.weight)


def test_inmo_initial_state_is_the_seeded_draws_and_the_traits() -> None:
    model = INMOBackbone(4, 5, 3, INMOConfig(init_std=0.2))  # default seed 0
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(model.user_emb.detach(), torch.randn(4, 3, generator=gen) * 0.2)
    torch.testing.assert_close(model.item_emb.detach(), torch.randn(5, 3, generator=gen) * 0.2)
    torch.testing.assert_close(
        model.se_proj.weight.detach(), torch.eye(3) + 0.01 * torch.randn(3, 3, generator=gen)
    )
    assert model.se_proj.bias is None
    assert float(model.alpha) == alpha_at(model.config, 0)
    assert not model.prepared and model.modalities is None
    traits = model.traits
    assert (traits.text_encoder, traits.image_encoder) == ("plm", "image")
    for cfg, expected in (
        (INMOConfig(multimodal=False), (None, None)),
        (INMOConfig(text=False), (None, "image")),
        (INMOConfig(image=False, text_encoder="llm"), ("llm", None)),
    ):
        t = INMOBackbone(2, 2, 2, cfg).traits
        assert (t.text_encoder, t.image_encoder) == expected


def test_alpha_schedules_between_the_ends() -> None:
    linear = INMOConfig(alpha_schedule="linear", alpha_start=0.2, alpha_end=1.0, alpha_epochs=1)
    assert alpha_at(linear, 0) == pytest.approx(0.2) and alpha_at(linear, 1) == 1.0
    assert alpha_at(INMOConfig(alpha_schedule="linear", alpha_epochs=0), 0) == 1.0
    cosine = INMOConfig(alpha_schedule="cosine", alpha_start=0.5, alpha_end=1.0, alpha_epochs=10)
    t = 0.5 - 0.5 * math.cos(math.pi * 0.2)
    assert alpha_at(cosine, 2) == pytest.approx(0.5 + 0.5 * t)
    assert alpha_at(cosine, 0) == pytest.approx(0.5) and alpha_at(cosine, 10) == 1.0
    geometric = INMOConfig(alpha_start=0.5, alpha_end=1.0, alpha_decay=0.9)
    assert alpha_at(geometric, 3) == pytest.approx(1.0 - 0.5 * 0.9**3)


def test_inmo_se_loss_draws_negatives_from_the_template_items() -> None:
    """Templates {1, 2}: the negatives are uniform draws from them (replayed here with the
    same seed); two triples, so the margin must be per triple."""
    model = INMOBackbone(4, 4, 3, INMOConfig(se_weight=0.5, multimodal=False), seed=2)
    model.prepare(TRAIN)
    with torch.no_grad():
        model.item_templates.copy_(torch.tensor([False, True, True, False]))
    users, positives = torch.tensor([0, 2]), torch.tensor([1, 2])
    torch.manual_seed(5)
    loss = model.regularization(TRAIN, users, positives)
    torch.manual_seed(5)
    negatives = torch.tensor([1, 2])[torch.randint(2, (2,))]
    e_u = model.user_emb.detach()[users]
    w_pos = model.se_proj(model.item_emb[positives]).detach()
    w_neg = model.se_proj(model.item_emb[negatives]).detach()
    margin = (e_u * w_pos).sum(1) - (e_u * w_neg).sum(1)
    expected = 0.5 * torch.nn.functional.softplus(-margin).mean()
    torch.testing.assert_close(loss.detach(), expected)
    with torch.no_grad():
        model.item_templates.copy_(torch.tensor([True, True, True, False]))
    triples = torch.tensor([[1, 0], [2, 1]])
    loss = model.regularization(TRAIN, users, triples)
    w_pos, w_neg = model.se_proj(model.item_emb[[1, 2]]), model.se_proj(model.item_emb[[0, 1]])
    per_triple = (e_u * w_pos).sum(1) - (e_u * w_neg).sum(1)
    torch.testing.assert_close(
        loss, 0.5 * torch.nn.functional.softplus(-per_triple).mean()
    )
    empty = model.regularization(TRAIN, users[:0], positives[:0])
    assert float(empty) == 0.0 and empty.shape == ()


def test_sgl_views_replay_their_seeded_draws() -> None:
    """Both augmentations; the views of an epoch come from derive_seed(seed, "sgl-views",
    epoch), drawn twice in a row from one generator."""
    graph = Graph(torch.tensor([[0, 0, 1, 2, 2, 3], [0, 1, 1, 1, 2, 3]]), 4, 4)
    for augmentation in ("ed", "nd"):
        cfg = SGLConfig(augmentation=augmentation, drop_ratio=0.5)
        model = SGLBackbone(4, 4, 3, cfg, seed=9)
        assert model.epoch == 0
        model.set_epoch(2)
        gen = torch.Generator().manual_seed(derive_seed(9, "sgl-views", 2))
        expected = []
        for _ in range(2):
            if augmentation == "ed":
                keep = torch.rand(6, generator=gen) >= 0.5
            else:
                users, items = torch.rand(4, generator=gen) >= 0.5, torch.rand(4, generator=gen)
                keep = users[graph.edge_index[0]] & (items >= 0.5)[graph.edge_index[1]]
            expected.append(graph.edge_index[:, keep])
        views = model.epoch_views(graph)
        for got, want in zip(views, expected, strict=True):
            assert torch.equal(got, want), augmentation
        assert model.epoch_views(graph) is views  # cached for the epoch
        model.set_epoch(3)
        assert model.epoch_views(graph) is not views


def test_sgl_build_and_initial_state() -> None:
    cfg = SGLConfig(num_layers=1, init_std=0.3)
    built = sgl.component.build(cfg, BuildContext(dim=3, num_users=4, num_items=5, seed=6))
    assert built.config is cfg and built.seed == 6 and built.num_layers == 1
    gen = torch.Generator().manual_seed(6)
    torch.testing.assert_close(built.user_emb.detach(), torch.randn(4, 3, generator=gen) * 0.3)
    default = SGLBackbone(4, 5, 3)
    assert default.seed == 0 and default.config == SGLConfig()


def test_sgl_regularization_terms() -> None:
    """ssl: eq. 10 on both views for the batch's unique users and positive items, scaled
    by lambda_1 / B; L2: lambda_2 * sum of squared layer-0 rows / (2 B)."""
    graph = Graph(torch.tensor([[0, 0, 1, 2, 2, 3], [0, 1, 1, 1, 2, 3]]), 4, 4)
    users, items = torch.tensor([0, 2, 2]), torch.tensor([[1, 3], [2, 0], [1, 3]])
    only_l2 = SGLBackbone(4, 4, 3, SGLConfig(ssl_weight=0.0, reg_weight=0.5), seed=1)
    batch = torch.cat([only_l2.user_emb[users], only_l2.item_emb[items.flatten()]]).detach()
    expected_l2 = 0.5 * float(batch.square().sum()) / 6
    assert float(only_l2.regularization(graph, users, items).detach()) == pytest.approx(
        expected_l2, rel=1e-6
    )
    only_ssl = SGLBackbone(4, 4, 3, SGLConfig(ssl_weight=0.3, reg_weight=0.0, num_layers=1))
    view_a, view_b = only_ssl.epoch_views(graph)
    emb = (only_ssl.user_emb, only_ssl.item_emb)
    ua, ia = propagate(view_a, *emb, 1)
    ub, ib = propagate(view_b, *emb, 1)

    def nce(a: torch.Tensor, b: torch.Tensor, index: torch.Tensor) -> float:
        a = a.detach().double()
        b = b.detach().double()
        a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
        logits = a[index] @ b.T / 0.2
        return float((torch.logsumexp(logits, 1) - logits[range(len(index)), index]).sum())

    ssl = nce(ua, ub, torch.tensor([0, 2])) + nce(ia, ib, torch.tensor([1, 2]))
    got = only_ssl.regularization(graph, users, items)
    assert float(got.detach()) == pytest.approx(0.3 * ssl / 3, rel=1e-5)
    # 1-D items are the positives themselves
    got_1d = only_ssl.regularization(graph, users, items[:, 0])
    assert float(got_1d.detach()) == pytest.approx(0.3 * ssl / 3, rel=1e-5)
    none = SGLBackbone(4, 4, 3, SGLConfig(ssl_weight=0.0, reg_weight=0.0))
    assert float(none.regularization(graph, users, items)) == 0.0
    assert float(only_l2.regularization(graph, users[:0], items[:0])) == 0.0


def test_inmo_edge_dropout_backward_goes_through_the_transposed_matrix() -> None:
    model = INMOBackbone(4, 4, 3, INMOConfig(dropout=0.5, multimodal=False), seed=0)
    model.prepare(TRAIN)
    model.train()
    torch.manual_seed(0)
    users, items = model.represent(TRAIN)
    (users.sum() + items.square().sum()).backward()
    assert model.item_emb.grad is not None and bool(torch.isfinite(model.item_emb.grad).all())
    assert model.user_emb.grad is not None and float(model.user_emb.grad.abs().sum()) > 0
