from __future__ import annotations

from pathlib import Path

from PIL import Image
from rich.console import Console

from cdr.evaluation.report import metrics_table, ndcg_curves, plot_ndcg_curves
from cdr.evaluation.results import RunResults


def _run(path: Path, metrics: dict[str, float]) -> RunResults:
    return RunResults(path, metrics, {})


def test_ndcg_curves_parse_slices() -> None:
    curves = ndcg_curves({"a/ndcg@10": 0.2, "a/ndcg@5": 0.1, "ndcg@20": 0.3, "a/recall@5": 1.0})
    assert curves == {"a": [(5, 0.1), (10, 0.2)], "": [(20, 0.3)]}


def test_table_marks_best_per_row(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path / "x", {"mae": 0.8, "ndcg@20": 0.30}),
        _run(tmp_path / "y", {"mae": 0.7, "ndcg@20": 0.25, "only_y": 1.0}),
    ]
    table = metrics_table(runs)
    console = Console(record=True, width=120)
    console.print(table)
    text = console.export_text()
    assert "only_y" in text and "-" in text
    cells = {
        row: [c._cells[i] for c in table.columns[1:]]
        for i, row in enumerate(table.columns[0]._cells)
    }
    assert cells["mae"][1].startswith("[bold")  # lower error wins
    assert cells["ndcg@20"][0].startswith("[bold")  # higher ndcg wins
    assert [str(c) for c in metrics_table(runs, "ndcg*").columns[0]._cells] == ["ndcg@20"]


def test_plot_writes_png_only_when_there_is_a_curve(tmp_path: Path) -> None:
    curve = {f"all-users/all-items/ndcg@{n}": n / 200 for n in range(5, 101, 5)}
    runs = [_run(tmp_path / "a", curve), _run(tmp_path / "b", {"ndcg@20": 0.1})]
    out = tmp_path / "plots" / "ndcg.png"
    assert plot_ndcg_curves(runs, out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert not plot_ndcg_curves([runs[1]], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
