from __future__ import annotations

import threading
import time
from collections.abc import Callable
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


def _hold(lock: Path, release: threading.Event, held: threading.Event,
          then: Callable[[], None] | None = None) -> None:
    """Another process's hold on a cell: take its lock, optionally run it, keep the lock
    until told."""
    import fcntl

    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if then is not None:
            then()
        held.set()
        release.wait(timeout=60)
        fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.mark.parametrize("other_finishes", [True, False])
def test_a_cell_another_process_holds_is_skipped_then_read_back(
    tmp_path: Path, other_finishes: bool
) -> None:
    """Two reproduce processes share a study: a cell whose lock is held is left for later,
    then read back when the holder finished it, or run here when the holder let go of it
    unfinished (it died)."""
    from cdr.config.loading import default_data, merge
    from cdr.studies import cells as cells_module

    cells = grid_cells(["trainer.lr=0.1,0.01"], seeds=[0, 1])
    first = tmp_path / cells[0].dirname
    release, held = threading.Event(), threading.Event()

    def finish_it() -> None:  # the other process runs cells[0] to the end
        cells_module._run_cell(merge(default_data(), BASE), cells[0], REGISTRY, tmp_path, None)

    holder = threading.Thread(
        target=_hold,
        args=(tmp_path / f".{cells[0].dirname}.lock", release, held,
              finish_it if other_finishes else None),
    )
    holder.start()
    assert held.wait(timeout=30)
    # the holder lets go once this process has run every other cell and waits on cells[0]
    def release_when_the_rest_ran() -> None:
        deadline = time.monotonic() + 30
        while sum(c != str(first) for c in support.CALLS) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        release.set()

    watcher = threading.Thread(target=release_when_the_rest_ran)
    watcher.start()
    results = run_cells(BASE, cells, REGISTRY, tmp_path)
    holder.join()
    watcher.join()
    assert [r.cell for r in results] == cells  # in cell order, whoever ran them
    others = [tmp_path / c.dirname for c in cells[1:]]
    if other_finishes:  # run once, by the holder, first; read back here
        assert [str(first), *map(str, others)] == support.CALLS
    else:  # the holder left it: run here, after the cells it did not hold
        assert [*map(str, others), str(first)] == support.CALLS
    assert results[0].record.metrics["ndcg@20"] == pytest.approx(0.1)
