from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from cdr.errors import RunError
from cdr.evaluation.ranking import RankingResult
from cdr.evaluation.results import PER_USER, flatten, read_results, write_results
from cdr.runs import write_table


def _results() -> dict[str, RankingResult]:
    return {
        "all-users/all-items": RankingResult(
            torch.tensor([0, 2, 5]),
            {
                "ndcg@20": torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64),
                "recall@20": torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64),
            },
        ),
        "rating": RankingResult(torch.tensor([3]), {"mae": torch.tensor([0.75])}),
    }


def test_round_trip(tmp_path: Path) -> None:
    per_user = _results()
    metrics = {**flatten(per_user), "rmse": 0.9, "broken": math.nan}
    assert metrics["all-users/all-items/ndcg@20"] == pytest.approx(1.75 / 3)
    write_results(tmp_path, metrics, per_user)
    assert json.loads((tmp_path / "metrics.json").read_text())["broken"] is None
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temp files
    back = read_results(tmp_path)
    assert back.name == tmp_path.name
    assert back.metrics["rmse"] == 0.9
    assert math.isnan(back.metrics["broken"])
    assert set(back.per_user) == set(per_user)
    for name, result in per_user.items():
        assert back.per_user[name].users.tolist() == result.users.tolist()
        assert set(back.per_user[name].per_user) == set(result.per_user)  # no NaN padding
        for metric, values in result.per_user.items():
            torch.testing.assert_close(back.per_user[name].per_user[metric], values.double())


def test_metrics_only_and_errors(tmp_path: Path) -> None:
    write_results(tmp_path, {"mae": 0.7})
    assert not (tmp_path / PER_USER).exists()
    assert read_results(tmp_path).per_user == {}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match="missing"):
        read_results(empty)
    (tmp_path / "metrics.json").write_text('{"mae": "high"}')
    with pytest.raises(RunError, match="not a number"):
        read_results(tmp_path)
    with pytest.raises(RunError, match="not a run directory"):
        read_results(tmp_path / "absent")


def test_reads_one_parquet_per_slice(tmp_path: Path) -> None:
    write_results(tmp_path, {"ndcg@20": 0.5})
    write_table(
        tmp_path / "per_user_dual_ranking.parquet",
        {"user": torch.tensor([4, 9]), "ndcg@20": torch.tensor([0.25, 0.75])},
    )
    back = read_results(tmp_path)
    assert list(back.per_user) == ["dual_ranking"]
    assert back.per_user["dual_ranking"].users.tolist() == [4, 9]
    assert back.per_user["dual_ranking"].summary() == {"ndcg@20": 0.5}
