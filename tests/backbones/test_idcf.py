"""IDCF: the attention relation model and the batch loss against float64 loop references,
key users, new users represented from their new edges, the stop-gradient between the two
models, the epoch switch, and learning on planted data (above popularity, and above the
same model without its relation model)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from planted_inductive import target_data, train_and_test
from torch import Tensor

from cdr.backbones.idcf import IDCFBackbone, IDCFConfig, RelationModel, history_matrix
from cdr.interfaces import Graph

NU, NI, D = 7, 5, 4
# users 0-4, items 0-3 have training edges (user 1 the most, then 0 and 3); user 5 and
# item 4 appear only in the new edges; user 6 has no edge at all
TRAIN = torch.tensor([[0, 0, 1, 1, 1, 2, 3, 3, 4, 0], [0, 1, 1, 2, 3, 2, 0, 3, 1, 0]])
NEW = torch.tensor([[5, 5, 5, 2], [0, 2, 4, 4]])
FULL = torch.cat([TRAIN, NEW], dim=1)


def model(**overrides: Any) -> IDCFBackbone:
    backbone = IDCFBackbone(NU, NI, D, IDCFConfig(**overrides), seed=2)
    backbone.prepare(Graph(TRAIN, NU, NI))
    return backbone


def attention_reference(
    relation: RelationModel,
    query: Tensor,
    keys: Tensor,
    banned: frozenset[int] | set[int] = frozenset(),
) -> Tensor:
    """One query [D] against keys [K, D], float64, head by head and key by key."""
    with torch.no_grad():
        return _attention(relation, query, keys, banned)


def _attention(
    relation: RelationModel, query: Tensor, keys: Tensor, banned: frozenset[int] | set[int]
) -> Tensor:
    outputs = []
    for h in range(relation.num_heads):
        wq, wk, wv = (w[h].double() for w in (relation.w_query, relation.w_key, relation.w_value))
        q = query.double() @ wq
        allowed = [k for k in range(len(keys)) if k not in banned]
        logits = [float(q @ (keys[k].double() @ wk)) for k in allowed]
        top = max(logits)
        weights = [math.exp(v - top) for v in logits]
        total = sum(weights)
        head = sum(
            (w / total) * (keys[k].double() @ wv) for w, k in zip(weights, allowed, strict=True)
        )
        outputs.append(head)
    return torch.cat(outputs) @ relation.w_out.double()


def item_mean(items: Tensor, edges: Tensor, user: int) -> Tensor:
    """Mean of ``items`` over the user's distinct items in ``edges``, by a loop."""
    mine = sorted({i for u, i in zip(*edges.tolist(), strict=True) if u == user})
    return torch.stack([items[i].double() for i in mine]).mean(0)


def test_history_matrix_averages_each_users_distinct_items() -> None:
    items = torch.randn(NI, D, generator=torch.Generator().manual_seed(0))
    means = history_matrix(FULL, NU, NI) @ items
    for user in range(NU - 1):
        torch.testing.assert_close(means[user].double(), item_mean(items, FULL, user))
    assert float(means[NU - 1].abs().sum()) == 0.0  # user 6: no edge


def test_relation_model_matches_a_loop_reference_and_respects_exclusions() -> None:
    gen = torch.Generator().manual_seed(1)
    relation = RelationModel(D, 3, gen)
    queries, keys = torch.randn(4, D, generator=gen), torch.randn(6, D, generator=gen)
    exclude = torch.zeros(4, 6, dtype=torch.bool)
    exclude[0, 2] = exclude[3, 0] = exclude[3, 5] = True
    with torch.no_grad():
        out = relation(queries, keys, exclude)
    for row in range(4):
        banned = {int(k) for k in torch.nonzero(exclude[row]).flatten()}
        expected = attention_reference(relation, queries[row], keys, banned)
        torch.testing.assert_close(out[row].double(), expected, rtol=1e-5, atol=1e-6)


def test_key_users_are_the_most_active_seen_users() -> None:
    assert torch.nonzero(model(key_ratio=0.4).key_users).flatten().tolist() == [0, 1]
    assert torch.nonzero(model(key_ratio=0.2).key_users).flatten().tolist() == [1]
    assert torch.nonzero(model().key_users).flatten().tolist() == [0, 1, 2, 3, 4]


def test_new_users_are_estimated_from_their_new_edges_by_attention_over_key_users() -> None:
    backbone = model(key_ratio=0.6).eval()
    with torch.no_grad():
        users, items = backbone.represent(Graph(FULL, NU, NI))
    p, q = backbone.user_emb.detach(), backbone.item_emb.detach()
    torch.testing.assert_close(users[:5], p[:5], rtol=0, atol=0)  # seen users keep MF
    torch.testing.assert_close(items[:4], q[:4], rtol=0, atol=0)
    torch.testing.assert_close(items[4], q[:4].mean(0))  # unseen item: mean seen embedding
    torch.testing.assert_close(users[6], p[:5].mean(0))  # no edge at all: mean seen user
    # user 5: attention over the key users 0, 1, 3 from the mean of its items 0, 2 and 4
    query = item_mean(items, NEW, 5)
    expected = attention_reference(backbone.relation, query, p[[0, 1, 3]])
    torch.testing.assert_close(users[5].double(), expected, rtol=1e-5, atol=1e-6)


def test_batch_loss_matches_a_float64_reference() -> None:
    """L2 + BPR with the estimated embeddings + sim_weight * contrastive, with every key
    user attended (key_sample = 0) except the user itself."""
    backbone = model(key_sample=0, sim_weight=0.5, reg_weight=0.1).train()
    users, items = torch.tensor([1, 3, 1, 4]), torch.tensor([[2, 0], [0, 1], [3, 0], [1, 2]])
    with torch.no_grad():
        loss = backbone.regularization(Graph(TRAIN, NU, NI), users, items)
    p, q = backbone.user_emb.detach().double(), backbone.item_emb.detach().double()
    l2 = 0.1 * sum(
        float(p[u] @ p[u]) + sum(float(q[i] @ q[i]) for i in pair)
        for u, pair in zip(users.tolist(), items.tolist(), strict=True)
    )
    estimated = {
        u: attention_reference(backbone.relation, item_mean(q, TRAIN, u), p[:5], {u})
        for u in sorted(set(users.tolist()))
    }
    bpr = [
        -math.log(1 / (1 + math.exp(-float(estimated[u] @ q[i] - estimated[u] @ q[j]))))
        for u, (i, j) in zip(users.tolist(), items.tolist(), strict=True)
    ]
    distinct = sorted(estimated)
    contrastive = [
        -float(estimated[u] @ p[u])
        + math.log(sum(math.exp(float(estimated[u] @ p[v])) for v in distinct))
        for u in distinct
    ]
    expected = l2 / 4 + sum(bpr) / 4 + 0.5 * sum(contrastive) / len(distinct)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_relation_loss_trains_only_the_relation_model() -> None:
    """Stop-gradient: the meta latents (MF) get no gradient from the relation model's loss."""
    backbone = model(reg_weight=0.0).train()
    users, items = torch.tensor([0, 2, 4]), torch.tensor([[1, 3], [2, 0], [3, 2]])
    loss = backbone.regularization(Graph(TRAIN, NU, NI), users, items)
    loss.backward()
    for table in (backbone.user_emb, backbone.item_emb):
        assert table.grad is None or float(table.grad.abs().sum()) == 0.0
    grads = [p.grad for p in backbone.relation.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_relation_model_is_switched_on_at_relation_start() -> None:
    backbone = model(relation_start=2, reg_weight=0.0)
    users, items = torch.tensor([0, 2]), torch.tensor([[1, 3], [2, 0]])
    graph = Graph(FULL, NU, NI)
    backbone.set_epoch(1)
    backbone.train()
    with torch.no_grad():
        assert float(backbone.regularization(Graph(TRAIN, NU, NI), users, items)) == 0.0
    backbone.eval()
    with torch.no_grad():
        mean_user = backbone.represent(graph)[0][5]
    torch.testing.assert_close(mean_user, backbone.user_emb.detach()[:5].mean(0))
    backbone.set_epoch(2)
    backbone.train()
    with torch.no_grad():
        assert float(backbone.regularization(Graph(TRAIN, NU, NI), users, items)) > 0.0
    backbone.eval()
    with torch.no_grad():
        assert not torch.allclose(backbone.represent(graph)[0][5], mean_user)


@pytest.mark.slow
def test_learns_planted_tastes_above_popularity_through_its_relation_model() -> None:
    dataset, data = target_data()
    backbone = IDCFBackbone(dataset.num_users, dataset.target.num_items, 16, seed=1)
    ours, popularity, trained = train_and_test(backbone, epochs=30, lr=0.005)
    assert ours["all-users/all-items"] > popularity["all-users/all-items"]
    assert ours["unseen-users/all-items"] > popularity["unseen-users/all-items"]
    # the same trained model with its relation model off (new users: mean embedding)
    from cdr.evaluation.inductive import evaluate_inductive

    backbone.set_epoch(-1)
    with torch.no_grad():
        users, items = trained.backbone("target").represent(data.full)
    results = evaluate_inductive(
        lambda batch: users[batch] @ items.T,
        data.split,
        dataset.num_users,
        dataset.target.num_items,
        ks=(20,),
        batch_size=1024,
    )
    without = results["unseen-users/all-items"].summary()["ndcg@20"]
    assert ours["unseen-users/all-items"] > without + 0.01  # seeds 1-4: +0.02 to +0.06
