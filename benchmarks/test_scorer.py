"""Dot-scorer throughput: scoring a batch of users against a whole catalogue."""

from __future__ import annotations

import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cdr.scorers.dot import DotScorer


def test_dot_score_1k_users_x_10k_items(benchmark: BenchmarkFixture) -> None:
    gen = torch.Generator().manual_seed(0)
    users, items = torch.randn(1000, 64, generator=gen), torch.randn(10_000, 64, generator=gen)
    scores = benchmark(DotScorer().score, users, items)
    assert scores.shape == (1000, 10_000)
