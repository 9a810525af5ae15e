"""Tuning before a reproduction: each method row gets its own study of the same number of
trials on validation data, identical methods share one study, the chosen settings are the
best *validation* trial's and the table cells run with them; a study directory is never
read back for a cell run with another config."""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

import pytest
import support
from support import registry_with_fakes

from cdr.errors import ConfigError
from cdr.registry import Registry
from cdr.studies.cells import Cell, run_cells
from cdr.studies.tables import TableSpec
from cdr.studies.tuned import method_key, packaged_space, tune_methods, with_tuned

SPACE = """
sampler = "tpe"
[params."trainer.lr"]
type = "float"
low = 1e-3
high = 5e-2
log = true
[params."backbone.reg_weight"]
type = "float"
low = 1e-5
high = 1e-2
log = true
when = { "backbone.kind" = "lightgcn" }
"""
BASE = (
    "dataset.size=tiny",
    "split.kind=single-domain",
    "generator.kind=none",
    "aligner.kind=none",
    "trainer.epochs=2",
    "trainer.patience=2",
)
LIGHTGCN = ("LightGCN", ("backbone.kind=lightgcn",))
MF = ("MF", ("backbone.kind=mf",))


def test_every_method_gets_its_study_and_the_best_validation_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.toml").write_text(SPACE)
    first = TableSpec("t2", "methods", (LIGHTGCN, MF), (("all", ()),), ("ndcg@20",), BASE)
    # the same LightGCN row in a second table: one study serves both
    second = TableSpec("t3", "again", (LIGHTGCN,), (("all", ()),), ("ndcg@20",), BASE)
    chosen = tune_methods(
        [first, second],
        "micrec",
        trials=2,
        seed=0,
        registry=Registry(),
        out_dir=tmp_path / "out",
        space_path=tmp_path / "space.toml",
    )
    assert set(chosen) == {("t2", "LightGCN"), ("t2", "MF"), ("t3", "LightGCN")}
    assert chosen[("t2", "LightGCN")] is chosen[("t3", "LightGCN")]
    studies = sorted(p.name for p in (tmp_path / "out" / "tuning").iterdir())
    assert len(studies) == 2  # LightGCN and MF, not three
    for (_, label), method in chosen.items():
        assert method.metric.startswith("val_ndcg@")  # selected on validation
        rows = list(csv.DictReader((Path(method.study) / "trials.csv").open()))
        assert len(rows) == 2 and method.trials == 2
        complete = [r for r in rows if r["state"] == "complete"]
        best = max(complete, key=lambda r: float(r["value"]))
        assert method.value == pytest.approx(float(best["value"]))
        params = {k.removeprefix("param:"): v for k, v in best.items() if k.startswith("param:")}
        got = dict(o.split("=", 1) for o in method.overrides)
        assert set(got) == set(params)  # MF has no reg_weight (its `when` does not hold)
        for key, value in params.items():
            assert float(got[key]) == pytest.approx(float(value))
        assert ("backbone.reg_weight" in got) == (label == "LightGCN")
    saved = tomllib.loads((tmp_path / "out" / "tuned.toml").read_text())
    assert saved["trials_per_method"] == 2
    assert saved["t2"]["MF"]["overrides"] == list(chosen[("t2", "MF")].overrides)
    tuned = with_tuned(first, chosen)
    assert tuned.rows[1] == ("MF", (*MF[1], *chosen[("t2", "MF")].overrides))


def test_the_packaged_spaces_fit_the_papers_methods() -> None:
    from cdr.config.loading import apply_overrides, default_data
    from cdr.studies.papers import TABLES
    from cdr.tuning.space import check_space

    registry = Registry()
    for paper in ("music", "micrec"):
        space = packaged_space(paper)
        for spec in TABLES[paper]:
            for _, row in spec.rows:
                check_space(space, apply_overrides(default_data(), [*spec.base, *row]), registry)
    with pytest.raises(ConfigError, match="ships no search space"):
        packaged_space("compose")


def test_method_key_follows_every_override() -> None:
    assert method_key(("a=1", "b=2")) != method_key(("a=1", "b=3"))
    assert method_key(("a=1",)) == method_key(("a=1",))


@pytest.mark.usefixtures("fake_pipelines")
def test_a_cell_run_with_another_config_is_not_read_back(tmp_path: Path) -> None:
    registry = registry_with_fakes()
    base = {
        "dataset": {"kind": "tiny"},
        "encoders": {"item": {"kind": "constant"}, "user": {"kind": "constant"}},
        "generator": {"kind": "identity"},
    }
    run_cells(base, [Cell("t|MF|all", ("trainer.lr=0.1",), 0)], registry, tmp_path)
    calls = len(support.CALLS)
    run_cells(base, [Cell("t|MF|all", ("trainer.lr=0.1",), 0)], registry, tmp_path)
    assert len(support.CALLS) == calls  # the same config: read back
    with pytest.raises(ConfigError, match="was run with another config"):
        run_cells(base, [Cell("t|MF|all", ("trainer.lr=0.01",), 0)], registry, tmp_path)
