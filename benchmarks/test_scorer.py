"""Dot-scorer throughput: scoring 1,000 users against a 10,000-item catalogue (D = 64).

Ratio (also in ``--quick``): ``DotScorer.score`` against the bare matmul it should cost, timed
interleaved; the scorer must stay within 1.5x of it (a 3x slowdown fails). Absolute: one call
under a CPU-time target (measured 0.018-0.05 s on the 2-core CPU, one thread, idle to loaded: the
matmul's speed depends on what shares the core, which the ratio does not).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from cdr.scorers.dot import DotScorer

USERS, ITEMS, DIM = 1_000, 10_000, 64


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(USERS, DIM, generator=gen), torch.randn(ITEMS, DIM, generator=gen)


@pytest.mark.quick
def test_dot_score_1k_users_x_10k_items_vs_matmul(
    interleave: type, figures: Callable[..., None]
) -> None:
    users, items = _inputs()
    scorer = DotScorer()
    scores = scorer.score(users, items)
    assert scores.shape == (USERS, ITEMS)
    torch.testing.assert_close(scores, torch.mm(users, items.t()))
    timing = interleave(lambda: scorer.score(users, items), lambda: torch.mm(users, items.t()),
                        rounds=15)
    figures(
        "scorer/dot_1k_x_10k_cost_vs_matmul",
        "DotScorer.score, 1k users x 10k items x 64: its CPU time / a bare torch.mm's",
        1.0 / timing.speedup(),
        "x",
        target=1.5,
        peer="torch.mm(users, items.T)",
        ours_cpu_s=timing.median("a"),
        peer_cpu_s=timing.median("b"),
    )


def test_dot_score_1k_users_x_10k_items(timer: Callable, figures: Callable[..., None]) -> None:
    users, items = _inputs()
    scorer = DotScorer()
    scorer.score(users, items)
    runs = [timer(lambda: scorer.score(users, items)) for _ in range(15)]
    figures(
        "scorer/dot_1k_x_10k_cpu_s",
        "DotScorer.score, 1k users x 10k items x 64 (one call, median)",
        sorted(r[1] for r in runs)[len(runs) // 2],
        "CPU s",
        target=0.08,
        wall_s=sorted(r[0] for r in runs)[len(runs) // 2],
    )
