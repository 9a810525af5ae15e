"""Mult-VAE: the negative ELBO and the represent/decoder identity against a dense float64
reference written from the paper's equations, the KL annealing by step, resumable draws,
unseen users and items, and learning on planted data (also for users unseen in training)."""

from __future__ import annotations

import pytest
import torch
from backbones.planted import (
    model_ndcg20,
    one_thread,
    planted_clusters,
    popularity_ndcg20,
    train_steps,
)
from torch import Tensor

from cdr.backbones.multvae import MultVAEBackbone, MultVAEConfig, layer_dims
from cdr.errors import ConfigError
from cdr.interfaces import Graph

NU, NI = 7, 5
# users 0-4 and items 0, 2, 3, 4 have training edges (a duplicate edge counts once); user 5
# and item 1 appear only in the new edges, user 6 nowhere
TRAIN = torch.tensor([[0, 0, 1, 1, 2, 3, 3, 3, 4, 0], [0, 2, 2, 3, 0, 3, 4, 0, 4, 2]])
NEW = torch.tensor([[5, 5, 1], [0, 3, 1]])
GRAPH = Graph(TRAIN, NU, NI)
FULL = Graph(torch.cat([TRAIN, NEW], dim=1), NU, NI)
SEEN, UNSEEN = [0, 2, 3, 4], 1


def built(config: MultVAEConfig, dim: int = 10) -> MultVAEBackbone:
    """Every parameter redrawn N(0, 0.5), so that every layer matters."""
    model = MultVAEBackbone(NU, NI, dim, config, seed=0)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    model.prepare(GRAPH)
    return model


def dense_rows(edges: Tensor, users: list[int]) -> Tensor:
    """Binary x_u [B, I] over the seen items (float64)."""
    x = torch.zeros(len(users), NI, dtype=torch.float64)
    for u, i in edges.T.tolist():
        if u in users and i != UNSEEN:
            x[users.index(u), i] = 1.0
    return x


def reference_forward(
    model: MultVAEBackbone, x: Tensor, drop: Tensor | None, eps: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(mu, logvar, decoder hidden at z, logits) in float64 from the paper's section 2:
    g_phi on x / ||x|| (times the dropout mask / (1 - p)), z = mu + eps sigma, f_theta(z)."""
    norm = x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    h = x / norm if drop is None else x / norm * drop / (1 - model.config.dropout)
    h = h @ model.encoder_input.double() + model.encoder_input_bias.double()
    for layer in model.encoder:
        h = torch.tanh(h) @ layer.weight.double().T + layer.bias.double()
    k = model.latent
    mu, logvar = h[:, :k], h[:, k:]
    z = mu if eps is None else mu + eps.double() * torch.exp(0.5 * logvar)
    for layer in model.decoder:
        z = torch.tanh(z @ layer.weight.double().T + layer.bias.double())
    logits = z @ model.output_weight.double().T + model.output_bias.double()
    return mu, logvar, z, logits


def reference_neg_elbo(
    model: MultVAEBackbone, users: list[int], beta: float, drop: Tensor | None, eps: Tensor | None
) -> float:
    """mean_u [-sum_i x_ui log softmax_i (over the seen items) + beta KL_u] (the beta-ELBO)."""
    x = dense_rows(TRAIN, users)
    mu, logvar, _, logits = reference_forward(model, x, drop, eps)
    log_pi = torch.log_softmax(logits[:, SEEN], dim=1)
    neg_ll = -(x[:, SEEN] * log_pi).sum(1)
    kl = 0.5 * (-logvar + logvar.exp() + mu**2 - 1).sum(1)
    return float((neg_ll + beta * kl).mean().detach())


def test_negative_elbo_matches_a_dense_float64_reference() -> None:
    model = built(MultVAEConfig(hidden_layers=2, dropout=0.5))
    users = [0, 3, 4]
    # the dropout mask over the batch's entries in (user, item) order: user 0 {0, 2},
    # user 3 {0, 3, 4}, user 4 {4}; and the same mask as a dense [B, I] matrix
    keep = torch.tensor([True, False, True, True, False, True])
    drop = torch.zeros(3, NI, dtype=torch.float64)
    for flag, (b, i) in zip(
        keep.tolist(), [(0, 0), (0, 2), (1, 0), (1, 3), (1, 4), (2, 4)], strict=True
    ):
        drop[b, i] = float(flag)
    eps = torch.randn(3, model.latent, generator=torch.Generator().manual_seed(1))
    loss = model.negative_elbo(GRAPH, torch.tensor(users), 0.3, keep=keep, eps=eps)
    expected = reference_neg_elbo(model, users, 0.3, drop, eps)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert model.encoder_input.grad is not None
    assert float(model.output_weight.grad[UNSEEN].abs().sum()) == 0.0  # type: ignore[union-attr]
    assert float(model.output_weight.grad[SEEN].abs().sum()) > 0  # type: ignore[index]


def test_dot_products_of_represent_are_the_decoder_logits_at_mu() -> None:
    model = built(MultVAEConfig())
    model.eval()
    with torch.no_grad():
        users, items = model.represent(FULL)
    assert users.shape == (NU, 10) and items.shape == (NI, 10)  # trainer.dim wide
    everyone = list(range(NU))
    # the new edge (1, 1) is to an unseen item: not part of user 1's input
    _, _, hidden, logits = reference_forward(
        model, dense_rows(FULL.edge_index, everyone), None, None
    )
    scores = (users @ items.T).double()
    torch.testing.assert_close(scores[:, SEEN], logits[:, SEEN], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(users[:, :-1].double(), hidden, rtol=1e-5, atol=1e-5)
    # user 5 (unseen in training) is encoded from its new edges, user 6 from an empty row
    assert not torch.allclose(users[5], users[6])
    # unseen item 1: the mean of the seen items' [W_i, b_i] rows
    rows = torch.cat([model.output_weight, model.output_bias[:, None]], dim=1)
    torch.testing.assert_close(items[UNSEEN], rows[SEEN].mean(0))


def test_beta_anneals_linearly_to_its_cap_by_training_step() -> None:
    model = built(MultVAEConfig(anneal_cap=0.2, total_anneal_steps=20))
    users = torch.tensor([0, 3, 4, 0])  # duplicates count once
    betas = []
    for _ in range(3):
        betas.append(model.beta())
        model.regularization(GRAPH, users, users[:, None])
    assert betas == pytest.approx([0.0, 0.05, 0.1])
    model.step.fill_(100)
    assert model.beta() == pytest.approx(0.2)
    model.eval()  # no draws, no step: the ELBO at z = mu with the current beta
    loss = model.regularization(GRAPH, users, users[:, None])
    assert int(model.step) == 100
    assert float(loss.detach()) == pytest.approx(
        reference_neg_elbo(model, [0, 3, 4], 0.2, None, None), rel=1e-5
    )
    assert built(MultVAEConfig(anneal_cap=0.3, total_anneal_steps=0)).beta() == 0.3


def test_a_resumed_model_draws_the_same_dropout_and_noise() -> None:
    users = torch.tensor([0, 1, 3])
    model = built(MultVAEConfig())
    model.regularization(GRAPH, users, users[:, None])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model.regularization(GRAPH, users, users[:, None])
    resumed = built(MultVAEConfig())
    resumed.load_state_dict(state)
    again = resumed.regularization(GRAPH, users, users[:, None])
    assert float(again.detach()) == float(expected.detach())
    fresh = built(MultVAEConfig())  # step 0: other draws
    assert float(fresh.regularization(GRAPH, users, users[:, None]).detach()) != float(
        expected.detach()
    )


def test_widths_follow_trainer_dim_and_refuse_what_does_not_fit() -> None:
    assert layer_dims(601, 1, 0) == ([600], 200)  # the paper's [600, 200]
    assert layer_dims(33, 0, 0) == ([], 32)  # linear decoder: users [mu, 1]
    with pytest.raises(ConfigError, match=r"backbone\.latent_dim.*trainer\.dim - 1 = 32"):
        layer_dims(33, 0, 8)
    with pytest.raises(ConfigError, match=r"trainer\.dim: 2"):
        layer_dims(2, 1, 0)


def test_learns_planted_clusters_for_seen_and_unseen_users() -> None:
    data = planted_clusters(unseen_fraction=0.25)
    model = MultVAEBackbone(
        data.num_users, data.num_items, 64, MultVAEConfig(total_anneal_steps=100), seed=0
    )
    with one_thread():
        losses = train_steps(model, data, steps=120)
        ours, popular = model_ndcg20(model, data), popularity_ndcg20(data)
        unseen = data.unseen_users
        ours_unseen = model_ndcg20(model, data, unseen)
        popular_unseen = popularity_ndcg20(data, unseen)
    assert losses[-1] < losses[0]
    assert ours > popular + 0.2, (ours, popular)
    assert ours_unseen > popular_unseen + 0.2, (ours_unseen, popular_unseen)
