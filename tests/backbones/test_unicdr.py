"""UniCDR: interaction masking, the aggregators and the representations against float64
loop references, the batch loss by hand, the domain-shared users tied across the two
domains (pair hook) during real training and through a checkpoint resume, and learning on
planted data."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from backbone_learning import planted_run
from torch import Tensor, nn

from cdr.backbones.lightgcn import LightGCNBackbone
from cdr.backbones.unicdr import (
    Aggregator,
    UniCDRBackbone,
    UniCDRConfig,
    UserIndex,
    sample_context,
)
from cdr.errors import CompositionError
from cdr.interfaces import Graph
from cdr.pipelines.backbone_model import InductiveModel

NU, NI_S, NI_T, D = 7, 6, 5, 4
# source: users 0-4 seen; target: users 0-4 seen, user 5 only in the new edges (unseen),
# item 4 only in the new edges (unseen), user 6 without any edge
SOURCE = torch.tensor([[0, 0, 1, 2, 2, 3, 4, 4], [0, 1, 2, 3, 4, 5, 0, 5]])
TARGET = torch.tensor([[0, 0, 0, 1, 1, 2, 3, 4, 4], [0, 1, 2, 1, 3, 2, 0, 3, 1]])
NEW = torch.tensor([[5, 5, 2, 1], [0, 4, 4, 3]])


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small tensors: one thread is many times faster than two on the shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pair(config: UniCDRConfig) -> tuple[UniCDRBackbone, UniCDRBackbone]:
    source = UniCDRBackbone(NU, NI_S, D, config, seed=1)
    target = UniCDRBackbone(NU, NI_T, D, config, seed=2)
    target.pair(source)
    source.prepare(Graph(SOURCE, NU, NI_S))
    target.prepare(Graph(TARGET, NU, NI_T))
    return source, target


def items_of(edges: Tensor, user: int) -> list[int]:
    return [int(i) for u, i in edges.T.tolist() if u == user for i in [i]]


@pytest.mark.usefixtures("one_thread")
def test_sample_context_keeps_the_authors_count_uniformly_and_drops_the_target() -> None:
    torch.manual_seed(0)
    degrees = [0, 1, 3, 10, 25]  # user u has items 0..degrees[u]-1
    users = torch.cat([torch.full((n,), u) for u, n in enumerate(degrees)])
    items = torch.cat([torch.arange(n) for n in degrees])
    index = UserIndex.of(torch.stack([users, items]), len(degrees), 30)
    batch = torch.tensor([4, 2, 3, 0, 1, 4])
    exclude = torch.tensor([7, 0, 29, 0, 0, 99])  # row 1's target is one of its items
    counts: Counter[tuple[int, int]] = Counter()
    draws = 400
    for _ in range(draws):
        rows, picked = sample_context(index, batch, max_context=10, mask_rate=0.1, exclude=exclude)
        for row, n in enumerate(degrees[u] for u in batch.tolist()):
            mine = picked[rows == row].tolist()
            keep = min(10, math.floor(n * 0.9))  # the authors' min(maxlen, int(n (1 - r)))
            target_in = int(exclude[row]) < n
            assert len(set(mine)) == len(mine) and set(mine) <= set(range(n))
            assert int(exclude[row]) not in mine
            assert keep - int(target_in) <= len(mine) <= keep
            counts.update((row, i) for i in mine)
    # uniform over the user's items: user 4 (25 items, 10 kept) has each in about 40% of
    # the draws (row 5; row 0 never has its target 7), user 3 (10 items, 9 kept) in 90%
    shares = [counts[(5, i)] / draws for i in range(25)]
    assert min(shares) > 0.3 and max(shares) < 0.5
    assert counts[(0, 7)] == 0 and sum(counts[(0, i)] for i in range(25)) > 9 * draws
    assert all(0.8 < counts[(2, i)] / draws < 0.97 for i in range(10))


def pooled_reference(agg: Aggregator, query: Tensor, vectors: list[Tensor]) -> Tensor:
    """float64 ``W_agg pool(vectors)`` of one user (query: its ID row): the mean, or the
    softmax over ``<tanh(W_att v + b), query>``; no vectors pool to 0."""
    dim = len(query)
    if not vectors:
        return torch.zeros(dim, dtype=torch.float64)
    stack = torch.stack([v.detach().double() for v in vectors])  # [n, D]
    if agg.attention is None:
        pooled = stack.mean(0)
    else:
        w, b = agg.attention.weight.detach().double(), agg.attention.bias.detach().double()
        logits = [float(torch.tanh(w @ v + b) @ query.detach().double()) for v in stack]
        z = sum(math.exp(x) for x in logits)
        pooled = torch.tensor([math.exp(x) / z for x in logits], dtype=torch.float64) @ stack
    assert agg.project is not None
    return agg.project.weight.detach().double() @ pooled


def test_aggregators_match_a_float64_loop_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    ids, values = torch.randn(4, 3, generator=gen), torch.randn(6, 3, generator=gen)
    rows = torch.tensor([0, 2, 0, 2, 2, 3])  # row 1 has no values
    for kind in ("mean", "user_attention"):
        agg = Aggregator(3, kind, 0.3, 0.0, torch.Generator().manual_seed(1))
        got = agg(ids, rows, values)
        for r in range(4):
            mine = [values[m] for m in range(6) if int(rows[m]) == r]
            expected = 0.3 * ids[r].double() + 0.7 * pooled_reference(agg, ids[r], mine)
            torch.testing.assert_close(got[r].double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["mean", "user_attention"])
def test_represent_is_the_specific_plus_shared_aggregation_of_both_domains(kind: str) -> None:
    """Dense float64 recomputation at inference: unseen users / items take the mean of the
    seen ID rows; the shared context is the user's items in the given graph plus its items
    in the other domain's training graph."""
    source, target = pair(UniCDRConfig(aggregator=kind, lambda_a=0.4))
    target.eval()
    full = torch.cat([TARGET, NEW], dim=1)
    users, items = target.represent(Graph(full, NU, NI_T))
    lam = 0.4
    seen_t = {int(u) for u in TARGET[0]}
    seen_any = seen_t | {int(u) for u in SOURCE[0]}
    seen_i = {int(i) for i in TARGET[1]}

    def filled(table: Tensor, seen: set[int]) -> Tensor:
        t = table.detach().double()
        mean = t[sorted(seen)].mean(0)
        return torch.stack([t[r] if r in seen else mean for r in range(len(t))])

    v_t, u_t = filled(target.item_emb, seen_i), filled(target.user_emb, seen_t)
    u_s = filled(source.shared_users.user_emb, seen_any)
    v_s = source.item_emb.detach().double()
    for u in range(NU):
        own = [v_t[i] for i in items_of(full, u)]
        other = [v_s[i] for i in items_of(SOURCE, u)]
        specific = lam * u_t[u] + (1 - lam) * pooled_reference(target.aggregator, u_t[u], own)
        shared_agg = source.shared_users.aggregator
        shared = lam * u_s[u] + (1 - lam) * pooled_reference(shared_agg, u_s[u], own + other)
        torch.testing.assert_close(users[u].double(), specific + shared, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items.double(), v_t, rtol=0, atol=1e-7)
    # inductive for users: the unseen user 5 is represented from its revealed items
    alone, _ = target.represent(Graph(TARGET, NU, NI_T))
    assert not torch.allclose(alone[5], users[5])
    torch.testing.assert_close(alone[5], alone[6])  # no edges: both the mean rows only


def test_batch_loss_matches_a_hand_computation() -> None:
    """No dropout, no masking, one given negative, B = 2 (the roll is by 1): every term of
    ``lambda L_rec + (1 - lambda) L_reg`` recomputed in float64."""
    cfg = UniCDRConfig(lambda_a=0.5, lambda_loss=0.4, mask_rate=0.0, max_context=100,
                       num_negatives=1, dropout=0.0)  # fmt: skip
    source, target = pair(cfg)
    target.train()
    users, items = torch.tensor([0, 4]), torch.tensor([[1, 4], [3, 0]])
    loss = target.regularization(Graph(TARGET, NU, NI_T), users, items)

    v_t, u_t = target.item_emb.detach().double(), target.user_emb.detach().double()
    u_s, v_s = source.shared_users.user_emb.detach().double(), source.item_emb.detach().double()
    w_t = target.aggregator.project.weight.detach().double()  # type: ignore[union-attr]
    w_s = source.shared_users.aggregator.project.weight.detach().double()  # type: ignore[union-attr]
    bil = cast(nn.Bilinear, target.critic)
    weight, bias = bil.weight.detach().double(), bil.bias.detach().double()

    def disc(a: Tensor, b: Tensor) -> float:
        return float(a @ weight[0] @ b + bias[0])

    def softplus(x: float) -> float:
        return math.log1p(math.exp(x))

    spec, shar, rec_pos, rec_neg = [], [], 0.0, 0.0
    for (pos, neg), u in zip(items.tolist(), users.tolist(), strict=True):
        ctx = [v_t[i] for i in items_of(TARGET, u) if i != pos]  # the target item left out
        other = [v_s[i] for i in items_of(SOURCE, u)]  # domain masking: source items only
        s = 0.5 * u_t[u] + 0.5 * w_t @ torch.stack(ctx).mean(0)
        h = 0.5 * u_s[u] + 0.5 * w_s @ torch.stack(other).mean(0)
        spec.append(s)
        shar.append(h)
        rec_pos += softplus(-float((s + h) @ v_t[pos])) / 2
        rec_neg += softplus(float((s + h) @ v_t[neg])) / 2
    reg = sum(softplus(-disc(spec[b], shar[b])) for b in range(2)) / 2
    reg += sum(softplus(disc(spec[1 - b], shar[b])) for b in range(2)) / 2
    expected = 0.4 * (rec_pos + rec_neg) + 0.6 * reg
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_pair_ties_the_shared_users_once_and_refuses_other_partners() -> None:
    source, target = pair(UniCDRConfig())
    model = InductiveModel({"source": source, "target": target}, None)
    params = list(model.parameters())
    assert sum(p is source.shared_users.user_emb for p in params) == 1
    assert target.shared is None and target.shared_users is source.shared
    assert not [k for k in model.state_dict() if k.startswith("backbones.target.shared")]
    # the target's loss trains the source's shared users and (domain masking) its items
    target.train()
    target.regularization(Graph(TARGET, NU, NI_T), torch.tensor([0, 1, 4]),
                          torch.tensor([[0, 4], [1, 0], [3, 2]])).backward()  # fmt: skip
    assert source.shared_users.user_emb.grad is not None
    assert float(source.shared_users.user_emb.grad.abs().sum()) > 0
    assert source.item_emb.grad is not None and float(source.item_emb.grad.abs().sum()) > 0
    assert source.user_emb.grad is None  # the source's specific users are not in it
    with pytest.raises(CompositionError, match="already paired"):
        target.pair(source)
    with pytest.raises(CompositionError, match="LightGCNBackbone"):
        UniCDRBackbone(NU, NI_T, D).pair(LightGCNBackbone(NU, NI_S, D))
    with pytest.raises(CompositionError, match="dim"):
        UniCDRBackbone(NU, NI_T, D).pair(UniCDRBackbone(NU, NI_S, D + 1))


TINY = ["dataset.size=tiny", "trainer.batch_size=16", "evaluation.ks=[5]", "trainer.patience=50",
        "trainer.dim=8"]  # fmt: skip
COMPONENTS = {"generator": "none", "backbone": "unicdr", "aligner": "none"}


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_training_pairs_the_domains_and_the_target_loss_moves_the_source_shared_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real inductive run in which the source domain's own loss is switched off: the
    source's shared users still move (the target's loss reaches them through the tie),
    its specific users do not."""
    from cdr.config import load_experiment
    from cdr.experiment import run_experiment
    from cdr.registry import Registry

    monkeypatch.chdir(tmp_path)
    calls: list[tuple[UniCDRBackbone, UniCDRBackbone, dict[str, Tensor]]] = []
    original_pair, original_loss = UniCDRBackbone.pair, UniCDRBackbone.regularization

    def spy_pair(self: UniCDRBackbone, other: Any) -> None:
        start = {"shared": other.shared.user_emb.detach().clone(),
                 "specific": other.user_emb.detach().clone()}  # fmt: skip
        calls.append((self, other, start))
        original_pair(self, other)

    def target_only(self: UniCDRBackbone, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        loss = original_loss(self, graph, users, items)
        return loss if self.shared is None else 0.0 * loss  # the source owns `shared`

    monkeypatch.setattr(UniCDRBackbone, "pair", spy_pair)
    monkeypatch.setattr(UniCDRBackbone, "regularization", target_only)
    registry = Registry()
    cfg = load_experiment(None, registry, [*TINY, "trainer.epochs=2"], COMPONENTS)
    metrics = run_experiment(cfg, registry, run_dir=tmp_path / "run").metrics
    assert len(calls) == 1
    target, source, start = calls[0]
    assert target.num_items == len(target.seen_items) and target.partner is source
    assert target.shared_users is source.shared
    assert not torch.equal(source.shared_users.user_emb.detach(), start["shared"])
    torch.testing.assert_close(source.user_emb.detach(), start["specific"], rtol=0, atol=0)
    assert 0.0 <= metrics["target/ndcg@5"] <= 1.0


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_resume_with_tied_shared_users_gives_identical_metrics(tmp_path: Path) -> None:
    """Interrupted after a checkpointed epoch and resumed: the checkpoint (safetensors)
    holds the shared users once and the resumed run ends byte-identical."""
    from cdr.config import load_experiment
    from cdr.experiment import resume_experiment, run_experiment, run_status
    from cdr.registry import Registry
    from cdr.training.checkpoint import load_checkpoint

    class Recorder:
        """Each training epoch's reported values (losses, validation); interrupts once
        ``after`` epochs were reported (0: never)."""

        def __init__(self, after: int = 0) -> None:
            self.after = after
            self.epochs: list[dict[str, Any]] = []

        def __call__(
            self, task: str, advance: int = 1, total: int | None = None, **info: Any
        ) -> None:
            if total is None and task == "train epoch":
                self.epochs.append(info)
                if len(self.epochs) == self.after:
                    raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        registry = Registry()
        cfg = load_experiment(None, registry, [*TINY, "trainer.epochs=3"], COMPONENTS)
        whole = Recorder()
        run_experiment(cfg, registry, run_dir=tmp_path / "whole", reporter=whole)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, registry, run_dir=tmp_path / "cut", reporter=Recorder(1))
        assert run_status(tmp_path / "cut")["state"] == "interrupted"
        state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "backbones.last.safetensors")
        tables = state["module"]
        shared = tables["backbones.source.shared.user_emb"]
        copies = [
            k for k, t in tables.items() if t.shape == shared.shape and torch.equal(t, shared)
        ]
        assert copies == ["backbones.source.shared.user_emb"]  # stored once
        resumed = Recorder()
        resume_experiment(tmp_path / "cut", registry, reporter=resumed)
    # the epochs after the resume trained exactly as the uninterrupted run's did
    assert len(resumed.epochs) == 2 and resumed.epochs == whole.epochs[1:]
    expected = (tmp_path / "whole" / "metrics.json").read_bytes()
    assert (tmp_path / "cut" / "metrics.json").read_bytes() == expected


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_unicdr_beats_popularity_on_planted_data(tmp_path: Path) -> None:
    """The inductive protocol on both domains of taste-driven synthetic data: NDCG@20 well
    above the popularity reference on the same split, overall and for the unseen users
    (represented through their revealed items). init_std 0.1: with the authors' N(0, 1)
    rows the same budget only edges past popularity (measured 0.20 vs 0.19)."""
    overrides = ["trainer.epochs=12", "trainer.patience=12", "backbone.init_std=0.1"]
    metrics = planted_run(tmp_path / "run", "unicdr", overrides)
    for key in ("target/ndcg@20", "target/unseen-users/all-items/ndcg@20", "source/ndcg@20"):
        assert metrics[key] > 1.5 * metrics[f"ref/popularity/{key}"], key
