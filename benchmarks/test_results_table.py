"""docs/benchmarks.md is generated from benchmarks/results/cpu.json, never edited by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.quick
def test_docs_table_is_generated_from_the_committed_results() -> None:
    path = ROOT / "tools" / "benchmark_table.py"
    spec = importlib.util.spec_from_file_location("benchmark_table", path)
    assert spec is not None and spec.loader is not None
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    data = json.loads((ROOT / "benchmarks/results/cpu.json").read_text())
    assert {"cpu_model", "cores", "threads", "torch"} <= set(data["machine"])
    for key, figure in data["figures"].items():
        assert figure["measured"] and len(figure["load_avg_1_5_15"]) == 3, key
    expected = table.render(data)
    assert (ROOT / "docs/benchmarks.md").read_text() == expected, (
        "docs/benchmarks.md is stale: python tools/benchmark_table.py"
    )
