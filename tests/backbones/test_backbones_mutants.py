"""Tests that kill surviving mutants of cdr.backbones (docs/testing.md): LightGCN's L2 term
and initialisations, the components' build plumbing, INMO's alpha schedules, initial state
and SE loss with drawn negatives, unseen-node filling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cdr.backbones import inmo, lightgcn, sgl
from cdr.backbones.aggregation import ModalityFeatures
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
    torch.testing.assert_close(loss, 0.5 * torch.nn.functional.softplus(-per_triple).mean())
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


# a denser graph for the template tests: several template neighbours per row, user 6 and
# item 5 without training edges
WIDE = Graph(
    torch.tensor(
        [
            [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5],
            [0, 1, 3, 1, 2, 0, 2, 3, 4, 0, 4, 1, 2, 3, 0, 4],
        ]
    ),
    num_users=7,
    num_items=6,
)


def test_lightgcn_l2_with_weight_one() -> None:
    model = LightGCNBackbone(4, 5, 3, reg_weight=1.0, seed=2)
    users, items = torch.tensor([1, 3]), torch.tensor([[0, 2], [4, 4]])
    e_u, e_i = model.user_emb.detach().double(), model.item_emb.detach().double()
    squares = float(e_u[[1, 3]].square().sum() + e_i[[0, 2, 4, 4]].square().sum())
    got = float(model.regularization(TRAIN, users, items).detach())
    assert got == pytest.approx(squares / 2, rel=1e-6)


def test_sgl_ssl_term_of_an_empty_batch_is_zero() -> None:
    model = SGLBackbone(4, 4, 3, SGLConfig(ssl_weight=0.3, reg_weight=0.0))
    empty = model.regularization(TRAIN, torch.tensor([], dtype=torch.long),
                                 torch.zeros(0, 2, dtype=torch.long))  # fmt: skip
    assert float(empty) == 0.0 and empty.shape == ()


def _se_reference(model: INMOBackbone, users: list[int], pos: list[int], neg: list[int]) -> float:
    """eq. 6 in float64 over the triples whose user, positive and negative are templates."""
    e_u = model.user_emb.detach().double()
    w = model.se_proj.weight.detach().double()
    e_i = model.item_emb.detach().double() @ w.T
    u_tem, i_tem = model.user_templates.tolist(), model.item_templates.tolist()
    terms = [
        float(torch.nn.functional.softplus(-(e_u[u] @ e_i[p] - e_u[u] @ e_i[n])))
        for u, p, n in zip(users, pos, neg, strict=True)
        if u_tem[u] and i_tem[p] and i_tem[n]
    ]
    return model.config.se_weight * sum(terms) / len(terms) if terms else 0.0


def test_inmo_se_loss_for_one_three_and_no_template_triples() -> None:
    """Negatives of 1-D positives are uniform draws over the template items, one per
    positive, in batch order (replayed with the same global seed)."""
    model = INMOBackbone(7, 6, 3, INMOConfig(se_weight=0.7, multimodal=False), seed=4)
    model.prepare(WIDE)
    with torch.no_grad():
        model.item_templates.copy_(torch.tensor([True, True, False, True, True, False]))
        model.user_templates.copy_(torch.tensor([True, True, True, False, True, True, False]))
    pool = [0, 1, 3, 4]
    for users, pos in (([2], [3]), ([0, 4, 5], [1, 0, 4]), ([2, 2, 1, 4], [0, 3, 4, 1])):
        torch.manual_seed(11)
        got = model.regularization(WIDE, torch.tensor(users), torch.tensor(pos))
        torch.manual_seed(11)
        neg = [pool[j] for j in torch.randint(len(pool), (len(pos),)).tolist()]
        assert float(got.detach()) == pytest.approx(
            _se_reference(model, users, pos, neg), rel=1e-5
        ), users
    # no triple made only of templates: zero, a scalar
    none = model.regularization(WIDE, torch.tensor([3, 6]), torch.tensor([[0, 1], [1, 0]]))
    assert float(none) == 0.0 and none.shape == ()


def test_inmo_dropout_backward_is_the_adjoint_of_its_forward() -> None:
    """represent is linear in (embeddings, biases) for a fixed dropout draw, so
    <d<out, g>/dtheta, theta> = <out, g>: fails when the transposed matrix of the backward
    does not drop the same template edges as the forward."""
    model = INMOBackbone(7, 6, 4, INMOConfig(dropout=0.5, multimodal=False, num_layers=1))
    model.prepare(WIDE)
    with torch.no_grad():
        model.user_bias.normal_(generator=torch.Generator().manual_seed(1))
        model.item_bias.normal_(generator=torch.Generator().manual_seed(2))
    model.train()
    gen = torch.Generator().manual_seed(3)
    g_u, g_i = torch.randn(7, 4, generator=gen), torch.randn(6, 4, generator=gen)
    for seed in range(3):
        model.zero_grad()
        torch.manual_seed(seed)
        users, items = model.represent(WIDE)
        value = (users * g_u).sum() + (items * g_i).sum()
        value.backward()
        params = (model.user_emb, model.item_emb, model.user_bias, model.item_bias)
        adjoint = sum(float((p.grad.double() * p.detach().double()).sum()) for p in params)
        assert adjoint == pytest.approx(float(value.detach()), rel=1e-4, abs=1e-5), seed


def test_inmo_training_dropout_replays_its_draw_rescaled() -> None:
    """eq. 1 while training: every (row, template) entry, in row-major order, is kept when
    its uniform draw is >= p and then weighted 1 / (1 - p); the count of eq. 1 is the
    undropped one. Dense float64 reference, no propagation."""
    p = 0.4
    model = INMOBackbone(7, 6, 3, INMOConfig(dropout=p, multimodal=False, num_layers=0))
    model.prepare(WIDE)
    with torch.no_grad():  # fewer templates than nodes, so rows differ in their counts
        model.user_templates.copy_(torch.tensor([True, False, True, True, False, True, False]))
        model.item_templates.copy_(torch.tensor([True, True, False, True, True, False]))
        model.user_bias.fill_(0.5)
        model.item_bias.fill_(-0.25)
    model.train()
    u_count, i_count = 7, 6
    edges = sorted(set(zip(WIDE.edge_index[0].tolist(), WIDE.edge_index[1].tolist(), strict=True)))
    pairs = sorted(
        [(u, u_count + i) for u, i in edges if model.item_templates[i]]
        + [(u_count + i, u) for u, i in edges if model.user_templates[u]]
    )
    torch.manual_seed(5)
    got = torch.cat(model.represent(WIDE)).detach().double()
    torch.manual_seed(5)
    keep = (torch.rand(len(pairs)) >= p).tolist()
    source = (
        torch.cat([model.user_emb + model.item_bias, model.item_emb + model.user_bias])
        .detach()
        .double()
    )
    expected = torch.zeros(u_count + i_count, 3, dtype=torch.float64)
    count = [0] * (u_count + i_count)
    for (row, col), kept in zip(pairs, keep, strict=True):
        count[row] += 1
        if kept:
            expected[row] += source[col] / (1 - p)
    alpha = float(model.alpha)
    expected *= torch.tensor([(c + 1.0) ** -alpha for c in count], dtype=torch.float64)[:, None]
    assert 0 < sum(keep) < len(keep)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_inmo_without_dropout_trains_on_the_eval_representation_and_draws_nothing() -> None:
    model = INMOBackbone(7, 6, 3, INMOConfig(dropout=0.0, multimodal=False))
    model.prepare(WIDE)
    reference = [t.detach() for t in model.eval().represent(WIDE)]
    torch.manual_seed(0)
    trained = model.train().represent(WIDE)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # the global stream was not advanced
    for got, want in zip(trained, reference, strict=True):
        torch.testing.assert_close(got.detach(), want)


def test_inmo_keeps_its_training_templates_at_inference() -> None:
    """Templates come from the graph given to prepare; represent on the inference graph
    (with E_new) must not re-select them."""
    model = INMOBackbone(7, 6, 3, INMOConfig(multimodal=False))  # ratio 1: all trained nodes
    model.prepare(WIDE)
    users, items = model.user_templates.clone(), model.item_templates.clone()
    assert not users[6] and not items[5]
    full = Graph(torch.cat([WIDE.edge_index, torch.tensor([[6, 6], [5, 0]])], 1), 7, 6)
    model.eval().represent(full)
    assert torch.equal(model.user_templates, users)
    assert torch.equal(model.item_templates, items)


def _top_by(score: torch.Tensor, trained: list[int], ratio: float) -> list[bool]:
    ranked = sorted(trained, key=lambda n: -float(score[n]))
    chosen = set(ranked[: math.ceil(ratio * len(trained))])
    return [n in chosen for n in range(score.numel())]


def test_random_templates_replay_the_seeded_draws() -> None:
    """ranking "random": users then items drawn from one generator seeded with the
    backbone's seed, the top ratio of the trained nodes kept."""
    trained_users, trained_items = list(range(6)), list(range(5))
    for seed in (3, 8):
        cfg = INMOConfig(template_ranking="random", template_ratio=0.5, multimodal=False)
        model = INMOBackbone(7, 6, 3, cfg, seed=seed)
        torch.manual_seed(123)  # the global stream must play no part
        model.prepare(WIDE)
        gen = torch.Generator().manual_seed(seed)
        user_score, item_score = torch.rand(7, generator=gen), torch.rand(6, generator=gen)
        assert model.user_templates.tolist() == _top_by(user_score, trained_users, 0.5), seed
        assert model.item_templates.tolist() == _top_by(item_score, trained_items, 0.5), seed


def test_select_templates_ratio_bounds() -> None:
    from cdr.backbones.templates import select_templates

    for bad in (0.0, -0.5, 1.5, 2.0):
        with pytest.raises(ValueError, match=r"ratio: .* is not in \(0, 1\]"):
            select_templates(WIDE.edge_index, 7, 6, "sort", bad)
    users, items = select_templates(WIDE.edge_index, 7, 6, "sort", 1.0)
    assert int(users.sum()) == 6 and int(items.sum()) == 5


def test_normalized_adjacency_refuses_other_shapes() -> None:
    from cdr.backbones.adjacency import normalized_adjacency

    for bad in (torch.zeros(3, 4, dtype=torch.long), torch.zeros(4, dtype=torch.long),
                torch.zeros(1, 2, dtype=torch.long)):  # fmt: skip
        with pytest.raises(ValueError, match=r"edge_index: expected shape \[2, E\]"):
            normalized_adjacency(bad, 2, 2)


def test_adjacency_cache_keys_on_the_sizes_too() -> None:
    """One edge_index tensor seen with more users/items (e.g. new users at inference)."""
    from cdr.backbones.adjacency import AdjacencyCache

    cache = AdjacencyCache()
    edge_index = torch.tensor([[0, 1], [1, 0]])
    small = cache.adjacency(edge_index, 2, 2)
    large = cache.adjacency(edge_index, 3, 4)
    assert small.shape == (4, 4) and large.shape == (7, 7)
    assert cache.adjacency(edge_index, 2, 2) is small


def test_identity_cache_keeps_every_live_entry_up_to_its_capacity() -> None:
    from cdr.backbones.adjacency import IdentityCache

    cache: IdentityCache[int] = IdentityCache(capacity=3)
    graphs = [torch.tensor([[0], [i]]) for i in range(4)]
    builds: list[int] = []

    def build(i: int) -> int:
        builds.append(i)
        return i

    for _ in range(2):  # the second round is served from the cache
        for i in range(3):
            assert cache.get(graphs[i], "k", lambda i=i: build(i)) == i
    assert builds == [0, 1, 2]
    cache.get(graphs[3], "k", lambda: build(3))  # evicts the oldest, graph 0
    cache.get(graphs[2], "k", lambda: build(2))
    cache.get(graphs[0], "k", lambda: build(0))
    assert builds == [0, 1, 2, 3, 0]


def test_inmo_image_only_ablation_aggregates_by_image() -> None:
    """w/o TXT: the image features alone drive the aggregation."""
    gen = torch.Generator().manual_seed(0)
    text, image = torch.randn(6, 5, generator=gen), torch.randn(6, 4, generator=gen)
    cfg = INMOConfig(text=False, k=1)
    outputs = []
    for img in (image, image.flip(0)):
        model = INMOBackbone(7, 6, 3, cfg, seed=0).eval()
        model.set_modalities(ModalityFeatures(text, img))
        assert model.aggregates and model.modalities is not None
        assert model.modalities.text is None
        outputs.append(model.represent(WIDE)[1].detach())
    plain = INMOBackbone(7, 6, 3, INMOConfig(multimodal=False), seed=0).eval()
    assert not torch.allclose(outputs[0], plain.represent(WIDE)[1].detach())
    assert not torch.allclose(outputs[0], outputs[1])
