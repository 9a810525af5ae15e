"""Benchmark harness: thread count, ``--quick`` mode, interleaved A/B timing, results JSON.

- Threads: ``CDR_BENCH_THREADS`` (default 1: on the shared 2-core machine OpenMP threads spin
  at barriers while descheduled, and process CPU time then equals wall time on an idle core).
- ``--quick`` (or ``CDR_BENCH_QUICK=1``): only the tests marked ``quick`` run — the ratio
  assertions (ours against a peer, timed in the same process, interleaved A, B, A, B, ...)
  on smaller problems, a few seconds each; ``.ci/run`` runs it after the test suite.
- ``--bench-json PATH``: the figures recorded through the ``figures`` fixture are merged into
  PATH (by id), with the machine (CPU model, cores, threads, torch) and, per figure, the date
  and the load average at the time. ``tools/benchmark_table.py`` turns that file into
  ``docs/benchmarks.md``; nothing is copied by hand.

Targets: a ratio target lies between ``measured / 3`` and ``measured / 1.5`` (a 3x slowdown
fails; the rest is room for noise); absolute targets are 2-3x the time measured on the idle
CPU.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

THREADS = int(os.environ.get("CDR_BENCH_THREADS", "1"))
torch.set_num_threads(THREADS)

ROOT = Path(__file__).resolve().parent.parent
RESULTS: dict[str, dict[str, Any]] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cdr benchmarks")
    group.addoption(
        "--quick",
        action="store_true",
        default=os.environ.get("CDR_BENCH_QUICK", "") not in ("", "0"),
        help="run only the ratio assertions (tests marked quick), on small problems",
    )
    group.addoption(
        "--bench-json",
        default=None,
        help="merge the recorded figures into this JSON file (e.g. benchmarks/results/cpu.json)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "quick: a ratio assertion that also runs in --quick mode (CI)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--quick"):
        return
    keep = [item for item in items if item.get_closest_marker("quick")]
    dropped = [item for item in items if not item.get_closest_marker("quick")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    """Whether this is a ``--quick`` run (smaller problems, fewer rounds)."""
    return bool(request.config.getoption("--quick"))


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    wall, cpu = clocks()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


class Interleaved:
    """Medians of A and B timed alternately (A, B, A, B, ...) after one warm-up call each."""

    def __init__(
        self, a: Callable[[], object], b: Callable[[], object], rounds: int, warmup: int = 1
    ) -> None:
        for _ in range(warmup):
            a()
            b()
        self.a: list[tuple[float, float]] = []
        self.b: list[tuple[float, float]] = []
        for _ in range(rounds):
            self.a.append(timed(a))
            self.b.append(timed(b))
        self.rounds = rounds

    def median(self, which: str, clock: str = "cpu") -> float:
        runs = self.a if which == "a" else self.b
        return statistics.median(r[1 if clock == "cpu" else 0] for r in runs)

    def speedup(self, clock: str = "cpu") -> float:
        """B's median time / A's: how many times faster A (ours) is than B (the peer)."""
        return self.median("b", clock) / self.median("a", clock)


@pytest.fixture
def interleave() -> type[Interleaved]:
    return Interleaved


@pytest.fixture
def timer() -> Callable[[Callable[[], object]], tuple[float, float]]:
    return timed


def _machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        flags = next(
            (ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")),
            "",
        ).split()
    except OSError:
        flags = []
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "bf16_instructions": sorted(f for f in flags if "bf16" in f),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": THREADS,
        "gpu": "none used (CPU figures only)",
    }


class Figures:
    """Record a benchmark figure (and check its target) for the results JSON.

    ``value`` is in ``unit``; ``target`` is the bound it must meet, ``higher`` says whether
    higher is better (speedups, items/s). ``peer`` names what a ratio was measured against.
    """

    def __init__(self, node: str, mode: str) -> None:
        self.node, self.mode = node, mode

    def __call__(
        self,
        key: str,
        what: str,
        value: float,
        unit: str,
        *,
        target: float | None = None,
        higher: bool = False,
        peer: str | None = None,
        clock: str = "cpu",
        check: bool = True,
        **extra: Any,
    ) -> None:
        passed = None if target is None else (value >= target if higher else value <= target)
        figure_id = key if self.mode == "full" else f"{key} (quick)"
        RESULTS[figure_id] = {
            "what": what,
            "value": value,
            "unit": unit,
            "target": target,
            "higher_is_better": higher,
            "passed": passed,
            "peer": peer,
            "clock": clock,
            "mode": self.mode,
            "test": self.node,
            "measured": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "threads": torch.get_num_threads(),
            **extra,
        }
        if check and passed is False:
            op = ">=" if higher else "<="
            pytest.fail(f"{what}: {value:.4g} {unit}, target {op} {target:.4g} {unit}")


@pytest.fixture
def figures(request: pytest.FixtureRequest, quick: bool) -> Figures:
    return Figures(request.node.nodeid, "quick" if quick else "full")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--bench-json")
    if not path or not RESULTS:
        return
    out = Path(path)
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    merged = {**data.get("figures", {}), **RESULTS}
    data = {
        "about": "written by `pytest benchmarks --bench-json PATH` (benchmarks/conftest.py); "
        "docs/benchmarks.md is generated from it by tools/benchmark_table.py",
        "machine": _machine(),
        "updated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "figures": dict(sorted(merged.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("cdr benchmark figures")
    for key, fig in RESULTS.items():
        target = ""
        if fig["target"] is not None:
            op = ">=" if fig["higher_is_better"] else "<="
            target = f"  (target {op} {fig['target']:.4g}: {'ok' if fig['passed'] else 'FAILED'})"
        load = fig["load_avg_1_5_15"][0]
        terminalreporter.write_line(
            f"{key}: {fig['value']:.4g} {fig['unit']}{target}  [load {load}]"
        )
