from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.evaluation.ranking import RankingResult
from cdr.evaluation.results import flatten, write_results

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _write_run(path: Path, values: torch.Tensor) -> Path:
    path.mkdir(parents=True)
    users = torch.arange(values.shape[0])
    per_user = {
        "all-users/all-items": RankingResult(
            users, {f"ndcg@{n}": values * n / 100 for n in range(5, 101, 5)}
        ),
        "tail_items": RankingResult(users[:5], {"ndcg@20": values[:5]}),
    }
    write_results(path, flatten(per_user), per_user)
    return path


def _rows(stdout: str) -> list[list[str]]:
    """The body rows of the rich table(s) in ``stdout``, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.strip().startswith("│")
    ]


def test_report_table_and_default_plot_next_to_runs(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    a = _write_run(tmp_path / "runs" / "run-a", torch.rand(30, generator=gen, dtype=torch.float64))
    b = _write_run(tmp_path / "runs" / "run-b", torch.rand(30, generator=gen, dtype=torch.float64))
    result = runner.invoke(app, ["report", str(a), str(b), "-m", "*ndcg@20"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "run-a" in result.stdout and "run-b" in result.stdout
    assert "tail_items/ndcg@20" in result.stdout and "ndcg@5" not in result.stdout
    # each cell is the mean over users of that run's per-user values, computed here
    rows = {row[0]: row[1:] for row in _rows(result.stdout)}
    again = torch.Generator().manual_seed(0)  # the same draws as a's and b's values
    va = torch.rand(30, generator=again, dtype=torch.float64).numpy()
    vb = torch.rand(30, generator=again, dtype=torch.float64).numpy()
    assert rows == {
        "all-users/all-items/ndcg@20": [f"{va.mean() * 0.2:.4f}", f"{vb.mean() * 0.2:.4f}"],
        "tail_items/ndcg@20": [f"{va[:5].mean():.4f}", f"{vb[:5].mean():.4f}"],
    }
    assert (tmp_path / "runs" / "ndcg_curves.png").stat().st_size > 1000
    out = tmp_path / "chosen.png"
    result = runner.invoke(app, ["report", str(a), "--plot", str(out)], env=WIDE)
    assert result.exit_code == 0 and out.exists()


def test_compare_runs_paired_tests(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(1)
    base = torch.rand(40, generator=gen, dtype=torch.float64)
    a = _write_run(tmp_path / "a", base)
    b = _write_run(tmp_path / "b", (base - 0.2).clamp_min(0))
    for test in ("t", "wilcoxon"):
        result = runner.invoke(app, ["compare", str(a), str(b), "--test", test], env=WIDE)
        assert result.exit_code == 0, result.output
        assert "all-users/all-items" in result.stdout and "40" in result.stdout
    result = runner.invoke(app, ["compare", str(a), str(b), "--slice", "tail_items"], env=WIDE)
    assert result.exit_code == 0 and " 5 " in result.stdout


@pytest.mark.parametrize("test", ["t", "wilcoxon"])
@pytest.mark.parametrize("slice_", [None, "tail_items"])
def test_compare_values_match_scipy_on_the_same_per_user_values(
    tmp_path: Path, test: str, slice_: str | None
) -> None:
    """Every cell of ``cdr compare`` against scipy.stats on the per-user values written:
    B = A + noise - 0.01, so the p-value is moderate (a wrong statistic changes it)."""
    gen = torch.Generator().manual_seed(3)
    base = torch.rand(40, generator=gen, dtype=torch.float64)
    other = (base + 0.05 * torch.randn(40, generator=gen, dtype=torch.float64) - 0.01).clamp(0, 1)
    a, b = _write_run(tmp_path / "run-a", base), _write_run(tmp_path / "run-b", other)
    args = ["compare", str(a), str(b), "--test", test]
    result = runner.invoke(app, [*args, "--slice", slice_] if slice_ else args, env=WIDE)
    assert result.exit_code == 0, result.output
    # per-user ndcg@20 as _write_run stores it: all users' values * 20 / 100; tail: 5 users
    va = base.numpy() * 0.2 if slice_ is None else base.numpy()[:5]
    vb = other.numpy() * 0.2 if slice_ is None else other.numpy()[:5]
    expected = stats.ttest_rel(va, vb) if test == "t" else stats.wilcoxon(va, vb)
    assert 1e-4 < expected.pvalue < 0.9  # a p-value whose digits mean something
    title = "paired t-test" if test == "t" else "paired Wilcoxon"
    assert f"ndcg@20 on {slice_ or 'all-users/all-items'}: {title}" in result.stdout
    assert _rows(result.stdout) == [
        [
            str(len(va)),
            f"{va.mean():.4f}",
            f"{vb.mean():.4f}",
            f"{va.mean() - vb.mean():+.4f}",
            f"{expected.statistic:.4g}",
            f"{expected.pvalue:.3g}",
        ]
    ]


def test_compare_user_errors_are_one_line(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", torch.linspace(0, 1, 10, dtype=torch.float64))
    result = runner.invoke(app, ["compare", str(a), str(a), "--slice", "nope"], env=WIDE)
    assert result.exit_code == 1
    assert "slice 'nope'" in result.stderr and "Traceback" not in result.output
    result = runner.invoke(app, ["compare", str(a), str(tmp_path / "missing")], env=WIDE)
    assert result.exit_code == 1 and "not a run directory" in result.stderr
    result = runner.invoke(app, ["compare", str(a), str(a), "--test", "anova"], env=WIDE)
    assert result.exit_code == 2


def test_compare_prefers_the_target_overall_slice(tmp_path: Path) -> None:
    values = torch.linspace(0, 1, 12, dtype=torch.float64)
    runs = []
    for name, shift in (("a", 0.0), ("b", 0.1)):
        users = torch.arange(12)
        per_user = {
            f"{domain}/all-users/all-items": RankingResult(
                users[: 12 - i], {"ndcg@20": (values + shift)[: 12 - i]}
            )
            for i, domain in enumerate(("source", "target"))
        }
        (tmp_path / name).mkdir()
        write_results(tmp_path / name, flatten(per_user), per_user)
        runs.append(str(tmp_path / name))
    result = runner.invoke(app, ["compare", *runs], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "target/all-users/all-items" in result.stdout and " 11 " in result.stdout
