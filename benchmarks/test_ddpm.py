"""DDPM generator performance on CPU (GPU figures need the lent device; none measured here).

Issue targets: sampling 100k cold users at T = 10 in < 1 s; one stage-2 epoch at MuSiC
Task-1 scale (~2k overlapping users, ~108k of their target ratings) in < 10 s; peak RSS
< 4 GiB. Each figure below also has a target near twice its measured CPU time on this CPU
(one thread), so a 3x slowdown fails; float32 sampling is measured like the rest (no xfail).

Ratios (``--quick`` too, on 20k users): the chunked reverse chain against one
[users, width] pass per step, and bfloat16 autocast against float32, each timed
interleaved in the same process.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cdr.components import BuildContext
from cdr.data.records import Interactions
from cdr.generators.ddpm_generator import DDPMConfig, component
from cdr.pipelines.generation import GeneratorRunner, TargetSpace, rating_loss
from cdr.scorers.dot import DotScorer

DIM = 32
COLD_USERS = 100_000
QUICK_USERS = 20_000

#: CPU-time targets (s) for sampling 100k users at T = 10 with one thread.
SAMPLE_TARGETS = {("ddpm", "float32"): 8.0, ("ddim", "float32"): 9.0, ("ddpm", "bfloat16"): 5.0}


def _generator(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    gen = component.build(DDPMConfig(**kw), BuildContext(dim=DIM, in_dim=DIM))  # type: ignore[arg-type]
    return gen.eval()


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _has_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in text or "amx_bf16" in text


def _sampler(gen: torch.nn.Module, cond: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return gen.generate(cond, seed=0)  # type: ignore[operator]

    return run


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def test_unet_forward_backward_batch_1024(timer: Callable, figures: Callable[..., None]) -> None:
    gen = _generator().train()
    target, cond = torch.randn(1024, DIM), torch.randn(1024, DIM)
    opt = torch.optim.Adam(gen.parameters(), lr=1e-3)

    def step() -> None:
        loss = gen.loss(target, cond)  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    runs = [timer(step) for _ in range(20)]
    figures(
        "ddpm/unet_forward_backward_batch_1024_cpu_s",
        "U-Net (widths 128, 64) forward + backward + Adam step, batch 1024, dim 32",
        _median([r[1] for r in runs]),
        "CPU s",
        target=0.03,
        wall_s=_median([r[0] for r in runs]),
    )


@pytest.mark.parametrize(
    ("sampler", "dtype"), [("ddpm", "float32"), ("ddim", "float32"), ("ddpm", "bfloat16")]
)
def test_sample_100k_cold_users_t10(
    sampler: str, dtype: str, timer: Callable, figures: Callable[..., None]
) -> None:
    """Recorded for both dtypes; the issue's < 1 s is met (or not) by the bfloat16 path and
    the float32 path has its own target, met with margin on this CPU."""
    if dtype == "bfloat16" and not _has_bf16():
        pytest.skip("no bfloat16 instructions on this CPU (bfloat16 would be emulated)")
    gen = _generator(sampler=sampler, sample_dtype=dtype)
    run = _sampler(gen, torch.randn(COLD_USERS, DIM))
    assert run().shape == (COLD_USERS, DIM)
    runs = [timer(run) for _ in range(3)]
    figures(
        f"ddpm/sample_100k_t10_{sampler}_{dtype}_cpu_s",
        f"sampling 100k cold users, T = 10, {sampler.upper()} sampler, {dtype} (chunks of 8192)",
        _median([r[1] for r in runs]),
        "CPU s",
        target=SAMPLE_TARGETS[(sampler, dtype)],
        wall_s=_median([r[0] for r in runs]),
        issue_target="< 1 s",
        issue_target_met=_median([r[1] for r in runs]) < 1.0,
        peak_rss_gib=_peak_rss_gib(),
    )


@pytest.mark.quick
def test_chunked_chain_vs_one_pass_per_step(
    interleave: type, figures: Callable[..., None], quick: bool
) -> None:
    users = QUICK_USERS if quick else COLD_USERS
    cond = torch.randn(users, DIM)
    chunked = _generator()
    one_pass = _generator(sample_chunk=users)  # the pre-chunking path: [users, width] per step
    one_pass.load_state_dict(chunked.state_dict())
    a, b = _sampler(chunked, cond), _sampler(one_pass, cond)
    assert a().shape == b().shape == (users, DIM)  # same law; the noise is drawn per chunk
    timing = interleave(a, b, rounds=3, warmup=0)
    figures(
        "ddpm/chunked_speedup_vs_one_pass",
        f"sampling {users:,} users at T = 10, float32: one [users, width] pass per step / "
        "chunks of 8192 (CPU time)",
        timing.speedup(),
        "x",
        # measured 1.73x at 100k users; at --quick's 20k users 0.97-1.46x across runs on a
        # loaded 2-core machine (3 chunks against one pass), so --quick only guards against
        # chunking becoming clearly slower
        target=0.8 if quick else 1.0,
        higher=True,
        peer="generator.sample_chunk = number of users (one pass per step)",
        ours_cpu_s=timing.median("a"),
        peer_cpu_s=timing.median("b"),
    )


@pytest.mark.quick
def test_bfloat16_vs_float32_sampling(
    interleave: type, figures: Callable[..., None], quick: bool
) -> None:
    if not _has_bf16():
        pytest.skip("no bfloat16 instructions on this CPU (bfloat16 would be emulated)")
    users = QUICK_USERS if quick else COLD_USERS
    cond = torch.randn(users, DIM)
    fp32 = _generator()
    bf16 = _generator(sample_dtype="bfloat16")
    bf16.load_state_dict(fp32.state_dict())
    a, b = _sampler(bf16, cond), _sampler(fp32, cond)
    timing = interleave(a, b, rounds=2 if quick else 3)
    figures(
        "ddpm/bfloat16_speedup_vs_float32",
        f"sampling {users:,} users at T = 10: float32 / bfloat16 autocast (CPU time)",
        timing.speedup(),
        "x",
        target=1.2,
        higher=True,
        peer="the same generator in float32",
        ours_cpu_s=timing.median("a"),
        peer_cpu_s=timing.median("b"),
    )


def test_compiled_vs_eager_sampling(interleave: type, figures: Callable[..., None]) -> None:
    eager = _generator()
    compiled = _generator(compile=True)
    compiled.load_state_dict(eager.state_dict())
    cond = torch.randn(COLD_USERS, DIM)
    a, b = _sampler(compiled, cond), _sampler(eager, cond)
    torch.testing.assert_close(a(), b(), atol=1e-4, rtol=1e-4)  # compiles outside the timing
    timing = interleave(a, b, rounds=3, warmup=0)
    figures(
        "ddpm/compiled_speedup_vs_eager",
        "sampling 100k users at T = 10, float32: eager / torch.compile (CPU time)",
        timing.speedup(),
        "x",
        target=0.6,
        higher=True,
        peer="the same generator without torch.compile",
        ours_cpu_s=timing.median("a"),
        peer_cpu_s=timing.median("b"),
    )


def test_stage2_epoch_task1_scale(timer: Callable, figures: Callable[..., None]) -> None:
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

    runs = [timer(epoch) for _ in range(3)]
    figures(
        "ddpm/stage2_epoch_task1_scale_cpu_s",
        "MuSiC stage-2 epoch at Task-1 scale (2,165 users x 50 ratings, batch 256)",
        _median([r[1] for r in runs]),
        "CPU s",
        target=1.2,
        wall_s=_median([r[0] for r in runs]),
        issue_target="< 10 s",
        issue_target_met=_median([r[1] for r in runs]) < 10.0,
    )
    figures(
        "ddpm/peak_rss_gib",
        "peak RSS of the DDPM benchmark process (100k-user sampling included)",
        _peak_rss_gib(),
        "GiB",
        target=2.0,
        clock="-",
        issue_target="< 4 GiB",
        issue_target_met=_peak_rss_gib() < 4.0,
    )
