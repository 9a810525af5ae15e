from __future__ import annotations

import json
from pathlib import Path

import pytest
import support
from support import registry_with_fakes

from cdr.studies.tables import TableSpec, render_markdown, run_table, table_rows

REGISTRY = registry_with_fakes()
BASE = {
    "dataset": {"kind": "tiny"},
    "encoders": {"item": {"kind": "constant"}, "user": {"kind": "constant"}},
    "generator": {"kind": "identity"},
}


pytestmark = pytest.mark.usefixtures("fake_pipelines")


def test_table_aggregates_seeds_and_marks_the_best(tmp_path: Path) -> None:
    spec = TableSpec(
        "t2",
        "Table 2",
        rows=(("A", ("trainer.lr=0.1",)), ("B", ("trainer.lr=0.2",))),
        columns=(("beta=0.2", ("split.beta=0.2",)), ("beta=0.5", ("split.beta=0.5",))),
        metrics=("ndcg@20",),
    )
    result = run_table(spec, BASE, [0, 2], REGISTRY, tmp_path)
    assert len(support.CALLS) == 8
    mean, std = result.mean_std("A", "beta=0.5", "ndcg@20")
    assert mean == pytest.approx(0.11) and std == pytest.approx(0.01)  # seeds 0, 2 -> .10, .12
    text = render_markdown(result, [0, 2])
    assert "| method | beta=0.2 ndcg@20 | beta=0.5 ndcg@20 |" in text
    assert "**0.1100 ± 0.0100**" in text
    rows = table_rows(result)
    assert len(rows) == 4 and rows[0]["n"] == 2
    run_table(spec, BASE, [0, 2], REGISTRY, tmp_path)
    assert len(support.CALLS) == 8  # resumed: nothing rerun


def test_row_names_may_contain_slashes(tmp_path: Path) -> None:
    spec = TableSpec(
        "t3", "ablations", rows=(("w/o side", ()),), columns=(("b", ()),), metrics=("ndcg@20",)
    )
    result = run_table(spec, BASE, [0], REGISTRY, tmp_path)
    assert result.mean_std("w/o side", "b", "ndcg@20")[0] == pytest.approx(0.1)


def test_reproduce_writes_markdown_csv_and_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdr.studies import papers, reproduce

    spec = TableSpec(
        "t",
        "a table",
        rows=(("A", ()), ("B", ("trainer.lr=0.5",))),
        columns=(("c", ()),),
        metrics=("ndcg@20",),
        base=(
            "dataset.kind=tiny",
            "encoders.item.kind=constant",
            "encoders.user.kind=constant",
            "generator.kind=identity",
        ),
    )
    monkeypatch.setitem(papers.TABLES, "toy", (spec,))
    markdown = reproduce.reproduce("toy", [0, 1], REGISTRY, tmp_path)
    text = markdown.read_text()
    assert "### a table" in text and "| A | **0.1050 ± 0.0050** |" in text
    assert (tmp_path / "toy.csv").read_text().startswith("table,method,condition,metric")
    assert (tmp_path / "toy.png").read_bytes()[:4] == b"\x89PNG"
    # the run time the 4 cells recorded (2 rows x 2 seeds), summed, is stated
    seconds = [
        json.loads(p.read_text())["seconds"] for p in (tmp_path / "cells").glob("*/status.json")
    ]
    assert len(seconds) == 4
    assert f"4 cell runs {sum(seconds) / 3600:.2f} h" in text


def test_error_metrics_are_lower_is_better() -> None:
    from cdr.studies.tables import lower_is_better

    assert lower_is_better("mae") and lower_is_better("dual_rmse") and lower_is_better("target/mae")
    assert not lower_is_better("ndcg@20") and not lower_is_better("dual_ndcg@20")


def test_reference_rows_come_from_the_runs_and_mark_methods_below_them() -> None:
    from cdr.studies.tables import TableResult

    spec = TableSpec(
        "t", "refs", rows=(("A", ()), ("B", ())), columns=(("c", ()),), metrics=("mae", "ndcg@20")
    )
    values = {
        ("A", "c"): {
            "mae": [0.80, 0.82],
            "ndcg@20": [0.30, 0.30],
            "ref/item_mean/mae": [0.75, 0.77],
            "ref/popularity/ndcg@20": [0.20, 0.20],
            "ref/global_mean/mae": [0.90, 0.90],
        },
        ("B", "c"): {"mae": [0.70, 0.70], "ndcg@20": [0.10, 0.10]},
    }
    result = TableResult(spec, values, {})
    assert result.references() == ["global_mean", "item_mean", "popularity"]
    text = render_markdown(result, [0, 1])
    assert "| *reference: item mean* | 0.7600 ± 0.0100 |  |" in text
    assert "| *reference: popularity* |  | 0.2000 ± 0.0000 |" in text
    # A's MAE 0.81 is worse than the item mean's 0.76; B's NDCG 0.10 below popularity's 0.20
    assert "| A | 0.8100 ± 0.0100 † | **0.3000 ± 0.0000** |" in text
    assert "| B | **0.7000 ± 0.0000** | 0.1000 ± 0.0000 † |" in text
    assert "A (c mae); B (c ndcg@20)" in text
    methods = {(r["method"], r["metric"]): r["mean"] for r in table_rows(result)}
    assert methods[("reference: item mean", "mae")] == pytest.approx(0.76)
    assert ("reference: item mean", "ndcg@20") not in methods


def test_a_best_epoch_in_the_last_tenth_of_its_budget_is_named() -> None:
    from cdr.studies.tables import TableResult

    spec = TableSpec(
        "t", "budget", rows=(("A", ()), ("B", ()), ("C", ())), columns=(("c", ()),),
        metrics=("ndcg@20",),
    )  # fmt: skip
    values = {
        # 0-indexed best epochs 26 and 27 of 30: epochs 27 and 28, 28 > 27 = 0.9 * 30
        ("A", "c"): {"ndcg@20": [0.3, 0.3], "best_epoch": [26.0, 27.0], "epoch_budget": [30, 30]},
        # epoch 27 of 30 is exactly at the boundary: not in the last tenth
        ("B", "c"): {"ndcg@20": [0.3], "best_epoch": [26.0], "epoch_budget": [30.0]},
        # counts (1-indexed): stage 0 took all 100 of 100
        ("C", "c"): {"ndcg@20": [0.3], "stage0_epochs": [100.0], "stage0_budget": [100.0],
                     "stage2_epochs": [10.0], "stage2_budget": [100.0]},
    }  # fmt: skip
    text = render_markdown(TableResult(spec, values, {}), [0, 1])
    assert (
        "Budget short (best epoch in the last 10% of it): A (c, training: best epoch 28 of 30); "
        "C (c, stage 0: best epoch 100 of 100)." in text
    )
    values[("A", "c")]["best_epoch"] = [3.0, 4.0]
    values[("C", "c")]["stage0_epochs"] = [12.0]
    text = render_markdown(TableResult(spec, values, {}), [0, 1])
    assert "Budget: every run's best epoch is before the last 10% of its budget." in text
    del values[("A", "c")]["epoch_budget"], values[("B", "c")]["epoch_budget"]
    del values[("C", "c")]["stage0_budget"], values[("C", "c")]["stage2_budget"]
    assert "Budget" not in render_markdown(TableResult(spec, values, {}), [0, 1])


def test_a_method_in_two_tables_runs_once_per_seed(tmp_path: Path) -> None:
    same = (("A", ("trainer.lr=0.1",)),)
    first = TableSpec("t2", "Table 2", rows=same, columns=(("c", ()),), metrics=("ndcg@20",))
    second = TableSpec(
        "t4", "Table 4", rows=(*same, ("B", ("trainer.lr=0.3",))), columns=(("c", ()),),
        metrics=("ndcg@20",),
    )  # fmt: skip
    run_table(first, BASE, [0, 1], REGISTRY, tmp_path)
    assert len(support.CALLS) == 2
    result = run_table(second, BASE, [0, 1], REGISTRY, tmp_path)
    assert len(support.CALLS) == 4  # only B's two seeds are new
    assert result.mean_std("A", "c", "ndcg@20") == run_table(
        first, BASE, [0, 1], REGISTRY, tmp_path
    ).mean_std("A", "c", "ndcg@20")
    assert all("t2_A" in d for d in result.run_dirs[("A", "c")])
    assert not (tmp_path / "t4_A_c-seed0").exists()


def test_excluded_rows_are_not_run_and_the_markdown_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdr.errors import ConfigError
    from cdr.studies import papers, reproduce

    base = (
        "dataset.kind=tiny",
        "encoders.item.kind=constant",
        "encoders.user.kind=constant",
        "generator.kind=identity",
    )
    rows = (("A", ()), ("B", ("trainer.lr=0.5",)))
    table = TableSpec(
        "t", "a table", rows=rows, columns=(("c", ()),), metrics=("ndcg@20",), base=base
    )
    only_b = TableSpec(
        "u", "B's table", rows=rows[1:], columns=(("c", ()),), metrics=("ndcg@20",), base=base
    )
    monkeypatch.setitem(papers.TABLES, "toy", (table, only_b))
    markdown = reproduce.reproduce("toy", [0], REGISTRY, tmp_path, exclude=["B"])
    text = markdown.read_text()
    assert "| A |" in text and "| B |" not in text and "--exclude 'B'" in text
    assert "B's table" not in text  # a table left without rows is dropped
    only = reproduce.reproduce("toy", [0], REGISTRY, tmp_path / "part", only=["t"]).read_text()
    assert "Generated by `cdr reproduce toy --table t --seeds 0`" in only  # says it was part
    assert sorted(p.name for p in (tmp_path / "cells").glob("[!.]*")) == ["t_A_c-seed0"]
    with pytest.raises(ConfigError, match="--exclude: 'C' is no method row"):
        reproduce.reproduce("toy", [0], REGISTRY, tmp_path, exclude=["C"])
    sensitivity = TableSpec(
        "f",
        "fig",
        rows=rows,
        columns=(("c", ()),),
        metrics=("ndcg@20",),
        base=base,
        tuned_from="t:B",
    )
    monkeypatch.setitem(papers.TABLES, "toy", (table, sensitivity))
    with pytest.raises(ConfigError, match="takes 'B'"):
        reproduce.reproduce("toy", [0], REGISTRY, tmp_path, exclude=["B"])
