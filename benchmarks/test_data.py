"""Dataset build times: ml-100k-genres (seconds) and the synthetic set at MuSiC's Task-1
scale (Table 1: 18,045 / 10,292 users, 156,884 / 159,997 items, ~881k / 513k ratings; images
off), which the issue wants built in under a minute and 4 GiB peak RSS on a 2-core machine.
The targets checked here are tighter: about twice the measured CPU time (a 3x slowdown
fails) and 1.5 GiB."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cdr.data.movielens import MovieLensGenresConfig, bundled_ml100k
from cdr.data.store import build_dataset
from cdr.registry import Registry

TASK1_SCRIPT = """
import json, sys, tempfile, time
from pathlib import Path
from cdr.data.store import build_dataset, read_manifest
from cdr.data.synthetic import SyntheticConfig
from cdr.registry import Registry
start, cpu = time.perf_counter(), time.process_time()
path = build_dataset(SyntheticConfig(size="task1"), Registry(), cache_root=Path(sys.argv[1]))
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
# VmHWM (this process's own peak), not ru_maxrss: Linux carries that over from the parent
rss = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024  # KiB
counts = read_manifest(path)["counts"]
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_rss": rss, "counts": counts}))
"""


@pytest.mark.skipif(bundled_ml100k() is None, reason="pip install --no-deps recbole")
def test_build_ml100k_genres(
    tmp_path: Path, timer: Callable, figures: Callable[..., None]
) -> None:
    paths: list[Path] = []

    def build() -> None:
        paths.append(
            build_dataset(
                MovieLensGenresConfig(), Registry(), cache_root=Path(tempfile.mkdtemp(dir=tmp_path))
            )
        )

    runs = [timer(build) for _ in range(3)]
    assert (paths[-1] / "manifest.json").is_file()
    figures(
        "data/build_ml100k_genres_cpu_s",
        "build ml-100k-genres (read, filter, split by genre, write Parquet)",
        sorted(r[1] for r in runs)[1],
        "CPU s",
        target=0.8,
        wall_s=sorted(r[0] for r in runs)[1],
    )


def test_build_synthetic_task1_scale(tmp_path: Path, figures: Callable[..., None]) -> None:
    """One fresh process, so ru_maxrss is the peak of this build alone."""
    out = subprocess.run(
        [sys.executable, "-c", TASK1_SCRIPT, tempfile.mkdtemp(dir=tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    counts = result["counts"]
    assert counts["source"]["users"] == 18_045 and counts["target"]["users"] == 10_292
    ratings = counts["source"]["interactions"] + counts["target"]["interactions"]
    figures(
        "data/build_synthetic_task1_cpu_s",
        f"build the synthetic set at MuSiC Task-1 scale ({ratings:,} ratings, no images)",
        result["cpu"],
        "CPU s",
        target=8.0,
        wall_s=result["seconds"],
        issue_target="< 60 s",
        issue_target_met=result["seconds"] < 60.0,
    )
    figures(
        "data/build_synthetic_task1_peak_rss_gib",
        "peak RSS of that build (its own process)",
        result["peak_rss"] / 2**30,
        "GiB",
        target=1.5,
        clock="-",
        issue_target="< 4 GiB",
        issue_target_met=result["peak_rss"] < 4 * 2**30,
    )
