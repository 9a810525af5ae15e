"""Fixed splits as RecBole benchmark files: read exactly as given, written back byte for
byte, and a run on exported files splits exactly as the original run did."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.composition import plan
from cdr.config import load_experiment
from cdr.data.recbole_split import HEADER, PARTS, fixed_split, split_files
from cdr.data.records import CrossDomainDataset, Domain, Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.data.store import load_dataset
from cdr.errors import DataError, SplitError
from cdr.experiment import run_experiment
from cdr.pipelines import single_domain
from cdr.registry import Registry

runner = CliRunner()
SINGLE = [
    "dataset.size=tiny",
    "split.kind=single-domain",
    "generator.kind=none",
    "backbone.kind=lightgcn",
    "trainer.epochs=2",
]


def fixed(directory: Path, name: str = "movies") -> list[str]:
    return [
        "dataset.kind=recbole-benchmark",
        f"dataset.directory={json.dumps(str(directory))}",
        f"dataset.name={name}",
        "split.kind=fixed",
        "generator.kind=none",
        "backbone.kind=lightgcn",
        "trainer.epochs=2",
    ]


def rows(split: DomainInductiveSplit, dataset: CrossDomainDataset) -> dict[str, Counter[Any]]:
    """Each part as a multiset of (user id, item id, rating, timestamp)."""
    out = {}
    for _, part in PARTS:
        inter: Interactions = getattr(split, part)
        out[part] = Counter(
            (dataset.user_ids[u], dataset.target.item_ids[i], r, t)
            for u, i, r, t in zip(
                inter.user.tolist(), inter.item.tolist(), inter.rating.tolist(),
                inter.timestamp.tolist(), strict=True,
            )
        )
    return out


def _split(overrides: list[str], registry: Registry) -> tuple[Any, CrossDomainDataset]:
    cfg = load_experiment(None, registry, overrides)
    dataset = load_dataset(cfg.dataset, registry)
    return plan(cfg, registry).split(dataset, cfg.split), dataset


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def export(args: list[str]) -> None:
    result = runner.invoke(app, ["datasets", "export-split", *args])
    assert result.exit_code == 0, result.output


def test_round_trip_byte_identical_and_same_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    first = tmp_path / "first"
    export(["--out", str(first), *sets(SINGLE)])
    names = sorted(p.name for p in first.iterdir())
    assert names == ["movies.cdr-split.json", *(f"movies.{s}.inter" for s in
                                                 ("test", "train", "valid"))]
    assert (first / "movies.train.inter").read_text().startswith(HEADER)
    # a cdr run on the exported files: the fixed protocol, the original split exactly
    cfg = load_experiment(None, registry, fixed(first))
    record = run_experiment(cfg, registry, run_dir=tmp_path / "run")
    assert record.pipeline == "fixed-single-domain"
    protocol = json.loads((tmp_path / "run" / "protocol.json").read_text())
    assert protocol["masked_at_test"] == ["train", "validation"]
    original, original_data = _split(SINGLE, registry)
    again, again_data = _split(fixed(first), registry)
    assert rows(again, again_data) == rows(original, original_data)
    assert again.new.user.numel() == 0 and again.unseen_users.numel() == 0
    # the split of the fixed-split run, exported: the input files byte for byte
    second = tmp_path / "second"
    export([str(tmp_path / "run"), "--out", str(second)])
    for suffix, _ in PARTS:
        file = f"movies.{suffix}.inter"
        assert (second / file).read_bytes() == (first / file).read_bytes(), file


def _write(directory: Path, name: str, parts: dict[str, list[str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    for suffix, lines in parts.items():
        (directory / f"{name}.{suffix}.inter").write_text(header + "".join(lines))


HAND = {
    # not in canonical order, ratings written "4.0", a pair repeated in train and test
    "train": ["b\tx\t4.0\t20\n", "a\ty\t3\t10\n", "a\tx\t5\t5\n", "c\tz\t2\t7\n",
              "c\ty\t1\t8\n", "b\tz\t2\t9\n"],
    "valid": ["a\tz\t4\t11\n", "b\ty\t3.5\t21\n"],
    "test": ["c\tx\t5\t12\n", "a\ty\t2\t30\n"],
}


def test_fixed_split_is_the_files_not_redrawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "bench", "hand", HAND)
    registry = Registry()
    base = fixed(tmp_path / "bench", "hand")
    split, dataset = _split(base, registry)
    for suffix, part in PARTS:
        inter: Interactions = getattr(split, part)
        got = [
            (dataset.user_ids[u], dataset.target.item_ids[i], r, t)
            for u, i, r, t in zip(inter.user.tolist(), inter.item.tolist(),
                                  inter.rating.tolist(), inter.timestamp.tolist(), strict=True)
        ]
        want = []
        for line in HAND[suffix]:
            u, i, r, t = line.split("\t")
            want.append((u, i, float(r), int(t)))
        assert got == want, part  # every row, in file order (the repeated pair too)
    # another split seed or ratios: the same split
    other, other_data = _split([*base, "split.seed=7", "split.ratios=[0.5, 0.25, 0.25]"],
                               registry)
    assert rows(other, other_data) == rows(split, dataset)
    # the stand-in auxiliary domain is the same interactions
    assert len(dataset.source.interactions) == len(dataset.target.interactions)
    # written back: canonical order and number form
    text = split_files(split, dataset, "hand")["hand.train.inter"]
    assert text.splitlines()[1:] == [
        "a\tx\t5\t5", "a\ty\t3\t10", "b\tz\t2\t9", "b\tx\t4\t20", "c\tz\t2\t7", "c\ty\t1\t8",
    ]


def test_fixed_protocol_masks_train_and_validation_at_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "bench", "hand", HAND)
    registry = Registry()
    captured: list[tuple[Any, Any]] = []
    original = single_domain.evaluate_ranking

    def spy(score: Any, users: Any, num_items: int, relevant: Any, exclude: Any, **kw: Any) -> Any:
        captured.append((relevant, exclude))
        return original(score, users, num_items, relevant, exclude, **kw)

    monkeypatch.setattr(single_domain, "evaluate_ranking", spy)
    cfg = load_experiment(None, registry, fixed(tmp_path / "bench", "hand"))
    run_experiment(cfg, registry, run_dir=tmp_path / "run")
    _, dataset = _split(fixed(tmp_path / "bench", "hand"), registry)
    relevant, exclude = captured[0]

    def pairs(inter: Interactions) -> list[tuple[str, str]]:
        return [(dataset.user_ids[u], dataset.target.item_ids[i])
                for u, i in zip(inter.user.tolist(), inter.item.tolist(), strict=True)]

    def lines(*parts: str) -> list[tuple[str, str]]:
        return [tuple(line.split("\t")[:2]) for part in parts for line in HAND[part]]

    # the test file's edges are ranked; the train and valid files' edges are masked
    assert pairs(relevant) == lines("test")
    assert pairs(exclude) == lines("train", "valid")


def test_missing_files_and_wrong_dataset_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    _write(tmp_path / "bench", "hand", {"train": HAND["train"], "valid": HAND["valid"]})
    with pytest.raises(DataError, match=r"hand\.test\.inter: no such file"):
        _split(fixed(tmp_path / "bench", "hand"), registry)
    dataset = load_dataset(load_experiment(None, registry, SINGLE).dataset, registry)
    with pytest.raises(SplitError, match=r"split\.kind=fixed needs a split given as files"):
        fixed_split(dataset, load_experiment(None, registry, SINGLE).split)
    result = runner.invoke(app, ["datasets", "export-split", "--out", str(tmp_path / "x"),
                                 "--format", "csv"])
    assert result.exit_code == 1 and "--format" in result.output


def _inter_rows(text: str) -> Counter[tuple[str, str]]:
    return Counter(tuple(line.split("\t")[:2]) for line in text.splitlines()[1:])


def test_cold_start_and_inductive_splits_are_exported_deterministically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = Registry()
    cold = ["dataset.size=tiny", "split.unseen_item_fraction=0.2"]
    split, dataset = _split(cold, registry)
    files = split_files(split, dataset, "movies")
    assert files == split_files(*_split(cold, registry), "movies")  # deterministic
    assert set(files) == {"books.inter", "movies.train.inter", "movies.valid.inter",
                          "movies.test.inter", "movies.unseen_items"}
    target: Domain = dataset.target
    test = split.target_interactions(dataset, split.test_users)
    assert _inter_rows(files["movies.test.inter"]) == Counter(
        (dataset.user_ids[u], target.item_ids[i])
        for u, i in zip(test.user.tolist(), test.item.tolist(), strict=True))
    test_users = {dataset.user_ids[u] for u in split.test_users.tolist()}
    train_users = {u for u, _ in _inter_rows(files["movies.train.inter"])}
    assert not test_users & train_users  # cold-start users have no target training edges
    unseen = set(files["movies.unseen_items"].split())
    assert unseen and not unseen & {i for _, i in _inter_rows(files["movies.train.inter"])}
    assert len(files["books.inter"].splitlines()) - 1 == len(dataset.source.interactions)

    inductive = ["dataset.size=tiny", "split.kind=inductive", "generator.kind=none",
                 "backbone.kind=lightgcn"]
    split, dataset = _split(inductive, registry)
    files = split_files(split, dataset, "movies")
    for stem in ("books", "movies"):
        for suffix in ("train.inter", "valid.inter", "test.inter", "new.inter",
                       "unseen_users", "unseen_items"):
            assert f"{stem}.{suffix}" in files
    new = split.target.new
    assert len(files["movies.new.inter"].splitlines()) - 1 == len(new)
    out = tmp_path / "inductive"
    export(["--out", str(out), *sets(inductive)])
    assert (out / "movies.new.inter").read_text() == files["movies.new.inter"]
    result = runner.invoke(app, ["datasets", "export-split", "--out", str(out),
                                 *sets(inductive)])
    assert result.exit_code == 1 and "never overwrites" in result.output
