from __future__ import annotations

from pathlib import Path

import pytest
import support
from support import registry_with_fakes

from cdr.errors import ConfigError
from cdr.studies.cells import run_cells
from cdr.studies.sweep import grid_cells, parse_grid, plot_sweep, sweep_table, write_csv

REGISTRY = registry_with_fakes()
BASE = {
    "dataset": {"kind": "tiny"},
    "encoders": {"item": {"kind": "constant"}, "user": {"kind": "constant"}},
    "generator": {"kind": "identity"},
}


pytestmark = pytest.mark.usefixtures("fake_pipelines")


def test_grid_is_the_cartesian_product_times_seeds() -> None:
    cells = grid_cells(["trainer.lr=0.1,0.01", "split.beta=0.2,0.5,0.8"], seeds=[0, 1])
    assert len(cells) == 12
    assert cells[0].overrides == ("trainer.lr=0.1", "split.beta=0.2")
    assert len({c.dirname for c in cells}) == 12


def test_grid_values_keep_toml_lists_whole() -> None:
    assert parse_grid(["evaluation.ks=[5,10],[20]"]) == [("evaluation.ks", ["[5,10]", "[20]"])]


def test_bad_grid_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"expected dotted\.key=v1,v2"):
        parse_grid(["trainer.lr"])


def test_study_resumes_finished_cells(tmp_path: Path) -> None:
    cells = grid_cells(["trainer.lr=0.1,0.01"], seeds=[0, 1])
    first = run_cells(BASE, cells, REGISTRY, tmp_path)
    assert len(support.CALLS) == 4
    again = run_cells(BASE, cells, REGISTRY, tmp_path)
    assert len(support.CALLS) == 4  # nothing rerun
    assert [r.record.metrics for r in again] == [r.record.metrics for r in first]
    rows = sweep_table(again)
    assert rows[1]["trainer.lr"] == "0.1" and rows[1]["seed"] == 1
    write_csv(tmp_path / "sweep.csv", rows)
    plot_sweep(tmp_path / "sweep.png", rows, "trainer.lr", "ndcg@20")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        (tmp_path / "sweep.csv").read_text().splitlines()[0].startswith("trainer.lr,seed,ndcg@20")
    )


def test_each_seed_redraws_the_split(tmp_path: Path) -> None:
    import tomllib

    cells = grid_cells([], seeds=[0, 3])
    results = run_cells(BASE, cells, REGISTRY, tmp_path)
    written = [tomllib.loads((r.record.run_dir / "config.toml").read_text()) for r in results]
    assert [(c["seed"], c["split"]["seed"]) for c in written] == [(0, 0), (3, 3)]
