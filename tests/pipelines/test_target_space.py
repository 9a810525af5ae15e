"""Stage 0 keeps each domain's features with the heads fitted on that domain: the two
domains' features live in unrelated bases, so a head fitted on one and applied to the
other predicts nothing."""

from __future__ import annotations

import math

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


def test_each_domain_is_read_by_its_own_heads() -> None:
    gen = torch.Generator().manual_seed(0)
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
    registry = Registry()
    cfg = load_experiment(
        None,
        registry,
        ["trainer.epochs=60", "trainer.lr=0.01", "trainer.batch_size=16", "heads.activation=none",
         "heads.dropout=0.0", "trainer.dim=8"],
    )  # fmt: skip
    torch.manual_seed(0)
    space, _ = fit_target_space(
        cfg, raw, target, source, None, torch.device("cpu"), lambda *a, **k: None
    )

    def rmse(users: torch.Tensor, items: torch.Tensor, r: Interactions) -> float:
        pred = (users[r.user] * items[r.item]).sum(-1)
        return math.sqrt(float(((pred - r.rating) ** 2).mean()))

    spread = float(source.rating.std())
    # the auxiliary space explains the auxiliary ratings (as the target space the target's)
    assert rmse(space.source_users, space.source_items, source) < 0.5 * spread
    assert rmse(space.target_users, space.target_items, target) < 0.5 * float(target.rating.std())
