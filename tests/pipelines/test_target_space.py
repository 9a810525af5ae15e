"""Stage 0 keeps each domain's features with the heads fitted on that domain: the two
domains' features live in unrelated bases, so a head fitted on one and applied to the
other predicts nothing."""

from __future__ import annotations

import math

import pytest
import torch

from cdr.config import load_experiment
from cdr.data.records import Interactions
from cdr.pipelines.coldstart import fit_target_space
from cdr.registry import Registry


def _ratings(users: torch.Tensor, items: torch.Tensor, n: int, gen: torch.Generator):
    u = torch.randint(0, users.shape[0], (n,), generator=gen)
    i = torch.randint(0, items.shape[0], (n,), generator=gen)
    r = 3.0 + (users[u] * items[i]).sum(-1)
    return Interactions(u, i, r, torch.zeros(n, dtype=torch.long))


def _planted(gen: torch.Generator):
    num_users, latent = 60, 4
    taste = torch.randn(num_users, latent, generator=gen)  # one person, both domains
    target_items, source_items = (torch.randn(40, latent, generator=gen) for _ in range(2))
    # the features a head sees: each domain's users in an unrelated random basis
    rotate_t, rotate_s = (torch.linalg.qr(torch.randn(8, 8, generator=gen))[0] for _ in range(2))
    pad = torch.zeros(num_users, 4)
    raw = {
        "target_user": torch.cat([taste, pad], 1) @ rotate_t,
        "source_user": torch.cat([taste, pad], 1) @ rotate_s,
        "item": torch.cat([target_items, torch.zeros(40, 4)], 1) @ rotate_t,
        "source_item": torch.cat([source_items, torch.zeros(40, 4)], 1) @ rotate_s,
    }
    target = _ratings(taste, target_items, 3000, gen)
    source = _ratings(taste, source_items, 3000, gen)
    return raw, target, source


def _fit(raw, target, source, *overrides: str):
    cfg = load_experiment(
        None,
        Registry(),
        ["trainer.epochs=60", "trainer.batch_size=16", "heads.activation=none",
         "heads.dropout=0.0", "trainer.dim=8", *overrides],
    )  # fmt: skip
    torch.manual_seed(0)
    return fit_target_space(
        cfg, raw, target, source, None, torch.device("cpu"), lambda *a, **k: None
    )


def rmse(users: torch.Tensor, items: torch.Tensor, r: Interactions) -> float:
    pred = (users[r.user] * items[r.item]).sum(-1)
    return math.sqrt(float(((pred - r.rating) ** 2).mean()))


def test_each_domain_is_read_by_its_own_heads() -> None:
    raw, target, source = _planted(torch.Generator().manual_seed(0))
    space, _ = _fit(raw, target, source, "trainer.lr=0.01")

    spread = float(source.rating.std())
    # the auxiliary space explains the auxiliary ratings (as the target space the target's)
    assert rmse(space.source_users, space.source_items, source) < 0.5 * spread
    assert rmse(space.target_users, space.target_items, target) < 0.5 * float(target.rating.std())


def test_stage0_learns_at_its_own_rate() -> None:
    """``trainer.stage0_lr`` sets the heads' learning rate whatever ``trainer.lr`` is (a
    study tuning lr keeps the target space fixed); left 0 it follows ``trainer.lr``."""
    raw, target, source = _planted(torch.Generator().manual_seed(0))
    spread = float(target.rating.std())
    own, _ = _fit(raw, target, source, "trainer.lr=1e-9", "trainer.stage0_lr=0.01")
    assert rmse(own.target_users, own.target_items, target) < 0.5 * spread
    follows, _ = _fit(raw, target, source, "trainer.lr=1e-9")  # stage0_lr 0: lr 1e-9
    assert rmse(follows.target_users, follows.target_items, target) > 0.9 * spread


def test_heads_run_once_per_distinct_entity_of_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of ratings passes each head over its distinct users / items (one feature
    vector, one dropout mask per entity and step), not over every rating."""
    from cdr.pipelines.coldstart import per_entity

    rows: list[int] = []

    class Head(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows.append(x.shape[0])
            return x * 2.0

    raw = torch.arange(10.0).unsqueeze(1)  # [10, 1]
    index = torch.tensor([7, 2, 7, 7, 0, 2])
    out = per_entity(Head(), raw, index)
    assert rows == [3]  # users 0, 2, 7
    assert out.flatten().tolist() == [14.0, 4.0, 14.0, 14.0, 0.0, 4.0]

    raw_f, target, source = _planted(torch.Generator().manual_seed(0))
    rows.clear()
    seen: list[int] = []
    from cdr.encoders import projection

    forward = projection.ProjectionHead.forward

    def counting(self: projection.ProjectionHead, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return forward(self, x)

    monkeypatch.setattr(projection.ProjectionHead, "forward", counting)
    _fit(raw_f, target, source, "trainer.lr=0.01", "trainer.epochs=1")
    # batches of 16 x 16 ratings from 60 users and 40 items per domain
    assert seen and max(seen) <= 60
