"""AlphaRec: MLP + graph convolution + InfoNCE on a hand case in float64, negatives that
are never the user's positives, representation of an item with no edge from its text alone,
named errors without text, and learning on planted data from real text features."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from backbone_learning import planted_run

from cdr.backbones.alpharec import (
    AlphaRecBackbone,
    AlphaRecConfig,
    negative_scores,
    sampled_info_nce,
)
from cdr.errors import CompositionError
from cdr.interfaces import Graph, ModalityFeatures

# 3 users, 4 items; item 3 has no edge (known only by its text)
EDGES = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
GRAPH = Graph(EDGES, num_users=3, num_items=4)
TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])  # z_i: [I, F = 2]
W1 = [[1.0, -1.0], [0.5, 1.0]]
B1 = [0.1, -0.2]
W2 = [[1.0, 0.0], [1.0, 1.0]]
B2 = [0.0, 0.3]
SLOPE = 0.5


def hand_model(**config: float) -> AlphaRecBackbone:
    cfg = AlphaRecConfig(num_layers=1, hidden=2, negative_slope=SLOPE, **config)  # type: ignore[arg-type]
    model = AlphaRecBackbone(3, 4, 2, cfg, seed=0)
    model.prepare(GRAPH)
    model.set_modalities(ModalityFeatures(text=TEXT))
    assert model.mlp is not None
    with torch.no_grad():
        model.mlp[0].weight.copy_(torch.tensor(W1))
        model.mlp[0].bias.copy_(torch.tensor(B1))
        model.mlp[2].weight.copy_(torch.tensor(W2))
        model.mlp[2].bias.copy_(torch.tensor(B2))
    return model


def by_hand() -> list[list[float]]:
    """Unit rows (users 0-2, items 0-3) of eqs. 2-3 with one layer, in plain floats."""

    def mlp(z: list[float]) -> list[float]:
        h = [sum(W1[r][c] * z[c] for c in range(2)) + B1[r] for r in range(2)]
        h = [v if v > 0 else SLOPE * v for v in h]
        return [sum(W2[r][c] * h[c] for c in range(2)) + B2[r] for r in range(2)]

    text = TEXT.tolist()
    z_users = [[(a + b) / 2 for a, b in zip(text[0], text[1], strict=True)], text[1], text[2]]
    e0 = [mlp(z) for z in [*z_users, *text]]  # nodes: users 0-2, items 3-6
    edges = [(0, 3), (0, 4), (1, 4), (2, 5)]
    degree = [sum(n in e for e in edges) for n in range(7)]
    layer1 = [[0.0, 0.0] for _ in range(7)]
    for u, i in edges:
        w = 1.0 / math.sqrt(degree[u] * degree[i])
        for d in range(2):
            layer1[u][d] += w * e0[i][d]
            layer1[i][d] += w * e0[u][d]
    mean = [[(a + b) / 2 for a, b in zip(e0[n], layer1[n], strict=True)] for n in range(7)]
    return [[v / math.hypot(*row) for v in row] for row in mean]


def test_mlp_and_graph_convolution_match_the_hand_case() -> None:
    model = hand_model()
    model.eval()
    with torch.no_grad():
        users, items = model.represent(GRAPH)
    expected = torch.tensor(by_hand(), dtype=torch.float64)
    torch.testing.assert_close(torch.cat([users, items]).double(), expected, atol=1e-6, rtol=1e-6)


def test_an_item_without_edges_is_represented_from_its_text_alone() -> None:
    model = hand_model()
    model.eval()
    with torch.no_grad():
        _, items = model.represent(GRAPH)
        assert model.mlp is not None
        alone = model.mlp(TEXT[3:4])[0]  # layer mean of an isolated node: e0 / (L + 1)
    torch.testing.assert_close(items[3], alone / alone.norm())


def test_info_nce_loss_matches_the_hand_case() -> None:
    model = hand_model(num_negatives=1, temperature=0.2)  # the batch's negatives only
    users, items = torch.tensor([0, 1, 2]), torch.tensor([[1, 2], [1, 3], [2, 0]])
    rows = by_hand()
    expected = 0.0
    for u, (i, j) in zip(users.tolist(), items.tolist(), strict=True):
        pos = sum(a * b for a, b in zip(rows[u], rows[3 + i], strict=True)) / 0.2
        neg = sum(a * b for a, b in zip(rows[u], rows[3 + j], strict=True)) / 0.2
        expected += -math.log(math.exp(pos) / (math.exp(pos) + math.exp(neg)))
    model.represent(GRAPH)  # the step's representations, reused by the loss
    loss = model.regularization(GRAPH, users, items)
    assert float(loss.detach()) == pytest.approx(expected / 3, rel=1e-5)
    loss.backward()
    assert model.mlp is not None and model.mlp[0].weight.grad is not None


def test_sampled_info_nce_and_both_negative_score_paths_match_loops() -> None:
    gen = torch.Generator().manual_seed(0)
    for num_items, n in ((3, 5), (30, 2)):  # full [B, I] product, then the row gather
        users, items = torch.randn(4, 2, generator=gen), torch.randn(num_items, 2, generator=gen)
        neg = torch.randint(num_items, (4, n), generator=gen)
        got = negative_scores(users, items, neg)
        for b in range(4):
            for k in range(n):
                assert float(got[b, k]) == pytest.approx(float(users[b] @ items[neg[b, k]]))
    s_pos, s_neg = torch.tensor([0.5, -0.2]), torch.tensor([[0.1, 0.3], [0.9, -1.0]])
    expected = 0.0
    for p, row in zip(s_pos.tolist(), s_neg.tolist(), strict=True):
        expected += -math.log(math.exp(p / 0.1) / sum(math.exp(s / 0.1) for s in [p, *row]))
    assert float(sampled_info_nce(s_pos, s_neg, 0.1)) == pytest.approx(expected / 2, rel=1e-6)


def test_sampled_negatives_are_uniform_over_the_users_non_positives() -> None:
    # user 0 likes items 0-7 of 10, user 1 likes 8 and 9, user 2 likes {1, 4, 6}
    users = torch.tensor([0] * 8 + [1, 1, 2, 2, 2])
    items = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 4, 6])
    graph = Graph(torch.stack([users, items]), num_users=4, num_items=11)  # item 10 unused
    model = AlphaRecBackbone(4, 11, 4, AlphaRecConfig(num_negatives=3000), seed=0)
    torch.manual_seed(0)
    given = torch.tensor([[8], [3], [0]])
    neg = model.negatives(graph, torch.tensor([0, 1, 2]), given)
    assert neg.shape == (3, 3000)
    assert torch.equal(neg[:, :1], given)
    allowed = {0: {8, 9}, 1: set(range(8)), 2: {0, 2, 3, 5, 7, 8, 9}}  # never item 10
    for user, ok in allowed.items():
        counts = torch.bincount(neg[user, 1:], minlength=11)
        assert set(torch.nonzero(counts).flatten().tolist()) == ok
        expected = 2999 / len(ok)  # uniform: every allowed item within 5 sigma
        assert all(abs(int(counts[i]) - expected) < 5 * math.sqrt(expected) for i in ok)


def test_traits_ask_for_text_and_own_objective_and_missing_text_is_a_named_error() -> None:
    model = AlphaRecBackbone(3, 4, 2, AlphaRecConfig(text_encoder="plm"), seed=0)
    assert model.traits.text_encoder == "plm" and model.traits.objective == "own"
    with pytest.raises(CompositionError, match="alpharec: no item text features were given"):
        model.represent(GRAPH)
    with pytest.raises(CompositionError, match="encoder 'plm' gave no item text features"):
        model.set_modalities(ModalityFeatures(text=None, image=torch.ones(4, 3)))
    with pytest.raises(CompositionError, match=r"shape \[3, 2\], expected \[4, F\]"):
        model.set_modalities(ModalityFeatures(text=torch.ones(3, 2)))


@pytest.mark.models
def test_learns_planted_tastes_better_than_popularity_from_text(tmp_path: Path) -> None:
    """MiniLM features of the synthetic items' text (which names their planted topics)."""
    metrics = planted_run(
        tmp_path / "run",
        "alpharec",
        ["backbone.text_encoder=plm", "trainer.epochs=12", "trainer.patience=12"],
    )
    assert metrics["best_epoch"] >= 2
    for domain in ("source", "target"):
        assert metrics[f"{domain}/ndcg@20"] > 1.5 * metrics[f"ref/popularity/{domain}/ndcg@20"]
        # items never seen in training are ranked from their text (popularity scores them 0)
        assert metrics[f"{domain}/all-users/unseen-items/ndcg@20"] > 0.25
