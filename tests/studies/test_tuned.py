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
from cdr.studies.tuned import TunedMethod, method_key, packaged_space, tune_methods, with_tuned

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


def test_a_sensitivity_row_keeps_its_own_value_and_takes_the_rest_from_its_source() -> None:
    from cdr.studies.tuned import needed_specs

    music = TableSpec("table2", "m", (("MuSiC", ("generator.kind=ddpm",)),), (), ("rmse",))
    fig = TableSpec(
        "fig3",
        "T",
        (("T=2", ("generator.kind=ddpm", "generator.steps=2")),),
        (),
        ("rmse",),
        tuned_from="table2:MuSiC",
    )
    tuned = TunedMethod(
        "MuSiC", ("generator.steps=20", "trainer.lr=0.001"), "val_rmse", 0.9, 4, "study"
    )
    chosen = {("table2", "MuSiC"): tuned}
    row = with_tuned(fig, chosen).rows[0][1]
    assert row == ("generator.kind=ddpm", "generator.steps=2", "trainer.lr=0.001")
    assert with_tuned(music, chosen).rows[0][1] == ("generator.kind=ddpm", *tuned.overrides)
    # asking for the figure alone still tunes the method it takes its settings from
    assert [s.name for s in needed_specs([fig], [music, fig])] == ["fig3", "table2"]
    with pytest.raises(ConfigError, match="is no table"):
        needed_specs([fig], [fig])


def test_a_table_tuned_from_a_table_takes_each_rows_own_methods_settings() -> None:
    dual = TableSpec(
        "table4",
        "dual",
        (("EMCDR", ("generator.kind=mapping",)), ("CMF", ("generator.kind=cmf",))),
        (),
        ("dual_rmse",),
        tuned_from="table2",
    )

    def tuned(label: str, lr: str) -> TunedMethod:
        return TunedMethod(label, (f"trainer.lr={lr}",), "val_rmse", 1.0, 4, label)

    chosen = {("table2", "EMCDR"): tuned("EMCDR", "0.001"), ("table2", "CMF"): tuned("CMF", "0.01")}
    rows = dict(with_tuned(dual, chosen).rows)
    assert rows == {
        "EMCDR": ("generator.kind=mapping", "trainer.lr=0.001"),
        "CMF": ("generator.kind=cmf", "trainer.lr=0.01"),
    }
    with pytest.raises(ConfigError, match="table4: row 'CMF' takes its settings from table2"):
        with_tuned(dual, {("table2", "EMCDR"): tuned("EMCDR", "0.001")})
    assert with_tuned(dual, {}) == dual  # nothing tuned: the rows as they are


def test_music_table4_is_the_papers_dual_cold_start_table() -> None:
    from cdr.studies.papers import TABLES

    tables = {s.name: s for s in TABLES["music"]}
    dual = tables["table4"]
    assert [label for label, _ in dual.rows] == [
        "MuSiC", "CMF", "EMCDR", "PTUPCDR", "DiffCDR", "SSCDR", "LACDR", "CATN", "OmniMatch"
    ]
    assert dual.columns == (("dual", ("split.beta=0.5", "split.unseen_item_fraction=0.2")),)
    assert dual.tuned_from == "table2"
    assert dict(dual.rows) == {k: v for k, v in tables["table2"].rows if k != "TGT"}


def test_music_figures_vary_t_and_the_activation_of_a_tuned_music() -> None:
    from cdr.studies.papers import TABLES

    figs = {s.name: s for s in TABLES["music"] if s.name.startswith("fig")}
    assert [label for label, _ in figs["fig3"].rows] == ["T=2", "T=5", "T=10", "T=20", "T=50"]
    assert [label for label, _ in figs["fig4"].rows] == ["tanh", "relu", "softmax"]
    assert all(s.tuned_from == "table2:MuSiC" for s in figs.values())
    assert figs["fig4"].rows[1][1][-1] == "heads.activation=relu"


def test_a_sensitivity_figure_is_drawn_from_the_table(tmp_path: Path) -> None:
    from cdr.studies.reproduce import _plot_sensitivity
    from cdr.studies.tables import TableResult

    spec = TableSpec(
        "fig3", "T", (("T=2", ()), ("T=5", ())), (("b=0.2", ()), ("b=0.5", ())), ("rmse",)
    )
    values = {
        (row, col): {"rmse": [1.0 + i, 1.2 + i]}
        for i, row in enumerate(("T=2", "T=5"))
        for col in ("b=0.2", "b=0.5")
    }
    _plot_sensitivity(TableResult(spec, values, {}), tmp_path / "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"


def test_papers_run_on_a_second_dataset_with_the_real_encoders() -> None:
    from cdr.config.loading import apply_overrides, default_data, structure_experiment
    from cdr.studies.papers import tables_for

    registry = Registry()
    music = {s.name: s for s in tables_for("music", "synthetic")}
    rows = dict(music["table2"].rows)
    assert "encoders.item.kind=fusion" in rows["MuSiC"]
    assert "encoders.user.kind=llm" in rows["MuSiC"]
    assert "encoders.item.kind=id" in rows["EMCDR"]
    assert "encoders.user.kind=llm" not in rows["EMCDR"]
    assert "encoders.user.kind=llm" in rows["CATN"]  # review-based: the users' reviews
    assert "encoders.user.kind=llm" not in dict(tables_for("music")[0].rows)["CATN"]
    for spec in (*music.values(), *tables_for("micrec", "synthetic")):
        assert "dataset.kind=synthetic" in spec.base
        assert not any("ml-100k" in o for o in spec.base)
        for _, row in spec.rows:
            cfg = structure_experiment(
                apply_overrides(default_data(), [*spec.base, *row]), registry
            )
            assert cfg.dataset.kind == "synthetic"
    assert tables_for("music") == tables_for("music", "ml-100k-genres")
    with pytest.raises(ConfigError, match="--dataset: 'amazon' is not one of"):
        tables_for("music", "amazon")
