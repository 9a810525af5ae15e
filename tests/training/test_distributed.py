"""Data-parallel training (``cdr.training.distributed`` + the loop under torchrun).

References are independent of the code under test: the least-squares gradient in closed
form (float64), a one-process run of the same global batches, the batch rebuilt by hand.
Ranks are real processes (gloo): spawned for the loop-level cases
(``distributed_support``), started by ``cdr run --nproc 2`` (torchrun) for the pipelines.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import distributed_support as ds
import pytest
import torch
from typer.testing import CliRunner

from cdr.cli.app import app
from cdr.errors import CompositionError, ConfigError
from cdr.training.distributed import World, split_rows, uneven
from cdr.training.loop import fit

# -- the split of a batch (one process) ----------------------------------------------------


class Pair(NamedTuple):
    users: torch.Tensor
    items: torch.Tensor


def test_split_rows_cuts_every_tensor_into_contiguous_chunks_weighted_by_rows() -> None:
    users = torch.arange(7)
    batch = ({"u": users, "pair": Pair(users * 10, users * 100)}, None, 3, torch.tensor(5.0))
    parts = [split_rows(batch, World(r, 3)) for r in range(3)]
    # by hand: tensor_split of 7 rows over 3 ranks -> 3, 2, 2
    assert [p[0][0]["u"].tolist() for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [w for _, w in parts] == [3 / 7, 2 / 7, 2 / 7]
    for part, _ in parts:
        assert isinstance(part[0]["pair"], Pair)
        assert torch.equal(part[0]["pair"].items, part[0]["u"] * 100)
        assert part[1] is None and part[2] == 3 and float(part[3]) == 5.0  # kept whole
    assert torch.equal(torch.cat([p[0][0]["pair"].users for p in parts]), users * 10)


def test_a_batch_with_fewer_rows_than_ranks_goes_whole_to_every_rank() -> None:
    batch = torch.arange(2)
    for rank in range(3):
        part, weight = split_rows(batch, World(rank, 3))
        assert torch.equal(part, batch) and weight == pytest.approx(1 / 3)


def test_one_process_keeps_the_batch() -> None:
    batch = (torch.arange(5), torch.ones(5, 2))
    part, weight = split_rows(batch, World())
    assert part is batch and weight == 1.0


@pytest.mark.parametrize(
    ("batch", "says"),
    [
        ((torch.arange(4), torch.arange(3)), "different first dims [3, 4]"),
        ((torch.tensor(1.0), None), "no tensor with rows"),
        ({"x": object()}, "a object"),
    ],
)
def test_a_batch_that_cannot_be_split_is_refused_by_name(batch: Any, says: str) -> None:
    with pytest.raises(CompositionError, match=r"data-parallel training: .*") as info:
        split_rows(batch, World(0, 2))
    assert says in str(info.value) and "\n" not in str(info.value)


def test_uneven_shards_are_told_apart_from_even_ones() -> None:
    assert not uneven(8 / 16, World(0, 2)) and uneven(7 / 13, World(0, 2))
    assert uneven(6 / 13, World(1, 2)) and not uneven(1 / 3, World(2, 3))
    assert not uneven(0.3, World())


def test_a_stage_without_a_shard_function_refuses_to_run_on_several_ranks() -> None:
    stage, _ = ds.toy_stage()
    stage = attrs.evolve(stage, shard=None)
    with pytest.raises(CompositionError, match="stage 'toy': its batches cannot be split"):
        fit(stage, None, world=World(0, 2))


def test_world_from_the_torchrun_environment() -> None:
    assert World.from_env({}) == World()
    world = World.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_main) == (1, 2, 1, False)
    with pytest.raises(ConfigError, match="environment: WORLD_SIZE='two' is not an integer"):
        World.from_env({"WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="RANK=2 LOCAL_RANK=2 WORLD_SIZE=2"):
        World.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_nproc_inside_a_torchrun_job_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "exp.toml"
    config.write_text('name = "dp"\n')
    result = CliRunner().invoke(app, ["run", str(config), "--nproc", "2"])
    assert result.exit_code == 1
    assert "--nproc 2: this process is already rank 1 of a 2-process torchrun job" in (
        " ".join(result.output.split())
    )


# -- two gloo ranks against one process (the loop) -----------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the ranks rendezvous, checkpoint (``full``, ``cut``) and report."""
    return tmp_path_factory.mktemp("ranks")


@pytest.fixture(scope="module")
def ranks(folder: Path) -> list[dict[str, Any]]:
    """Each rank's report of the three cases (``distributed_support._rank``)."""
    return ds.run_ranks(2, folder)


def test_two_ranks_sum_to_the_full_batch_gradient_in_closed_form(
    ranks: list[dict[str, Any]],
) -> None:
    x, y, w = ds.problem()
    residual = x @ w - y  # [7]
    grad = 2.0 / ds.ROWS * x.T @ residual + 2.0 * ds.C * w  # d/dw mean(r^2) + C |w|^2
    mse = float((residual**2).mean())
    assert [r["gradient"]["rows"] for r in ranks] == [4, 3]  # an uneven split
    for report in ranks:
        case = report["gradient"]
        assert case["grad"] == pytest.approx(grad.tolist(), rel=1e-12, abs=1e-14)
        assert case["loss"] == pytest.approx(mse + ds.C * float((w**2).sum()), rel=1e-12)
        assert case["mse"] == pytest.approx(mse, rel=1e-12)
        assert case["unused_grad_is_none"]  # no gradient anywhere: Adam still skips it


def test_a_nan_in_one_ranks_rows_stops_every_rank_at_the_same_step(
    ranks: list[dict[str, Any]],
) -> None:
    # step 1 holds rows 0-5 (finite), step 2 all 7: the nan row lies in rank 1's shard
    want = "nan: loss is nan at epoch 1, step 2"
    assert [r["divergence"] for r in ranks] == [want, want]


def _one_process(checkpoints: Path) -> tuple[dict[str, Any], ds.Recorder, list[float]]:
    stage, model = ds.toy_stage()
    recorder = ds.Recorder()
    out = fit(stage, checkpoints, recorder)
    result = {"best": out.best, "best_epoch": out.best_epoch, "epochs_run": out.epochs_run}
    return result, recorder, ds.params_of(model)


def test_two_ranks_train_as_one_process_on_the_same_global_batches(
    ranks: list[dict[str, Any]], tmp_path: Path
) -> None:
    result, recorder, params = _one_process(tmp_path)
    main, other = ranks[0]["fit"], ranks[1]["fit"]
    assert main["result"]["epochs_run"] == result["epochs_run"]
    assert main["result"]["best_epoch"] == result["best_epoch"]
    assert main["result"]["best"] == pytest.approx(result["best"], rel=1e-10)
    # the loss curve (loss, its part, validation per epoch), reported by rank 0 alone
    assert len(main["reports"]) == len(recorder.epochs) == result["epochs_run"]
    for got, want in zip(main["reports"], recorder.epochs, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-10), key
    assert other["reports"] == []
    # every rank ends with one process's parameters (rank 1 started elsewhere)
    for report in (main, other):
        assert report["params"] == pytest.approx(params, rel=1e-10)
    assert main["params"] == other["params"]


def test_rank_zero_alone_validates_and_checkpoints_and_ranks_share_their_random_state(
    ranks: list[dict[str, Any]],
) -> None:
    main, other = ranks[0]["fit"], ranks[1]["fit"]
    assert main["validated"] == list(range(main["result"]["epochs_run"]))
    assert other["validated"] == []
    assert main["saves"] == main["result"]["epochs_run"] + 1 and other["saves"] == 0
    # the first batch of every epoch splits 7 + 6 rows, each drawing per row: the ranks
    # drew different amounts, yet draw the same afterwards and end with the same states
    assert len(main["draws"]) == 3 * main["result"]["epochs_run"]
    assert main["draws"] == other["draws"]
    assert main["rng"] == other["rng"] and main["generator"] == other["generator"]


def test_a_checkpoint_of_two_ranks_resumes_in_one_process(
    ranks: list[dict[str, Any]], folder: Path, tmp_path: Path
) -> None:
    # both ranks were stopped at the start of epoch 5 (index 4): rank 0 had checkpointed 4
    assert ranks[0]["interrupted"]["stopped"] and ranks[1]["interrupted"]["stopped"]
    assert ranks[0]["interrupted"]["saves"] == 4 and ranks[1]["interrupted"]["saves"] == 0
    result, recorder, params = _one_process(tmp_path)
    stage, model = ds.toy_stage()
    resumed = ds.Recorder()
    out = fit(stage, folder / "cut", resumed)
    assert out.resumed_at == 4 and out.epochs_run == result["epochs_run"]
    assert ds.params_of(model) == pytest.approx(params, rel=1e-10)
    for got, want in zip(resumed.epochs, recorder.epochs[4:], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-10)


# -- pipelines under `cdr run --nproc 2` (torchrun) against one process --------------------

TINY = ["dataset.size=tiny", "trainer.batch_size=16", "evaluation.ks=[5]", "trainer.epochs=3"]

#: near-exact compositions: no per-row randomness in their losses (see the module
#: docstring of cdr.training.distributed), so two ranks must match one process up to
#: float32 summation order
PIPELINES = {
    "inductive": [
        *TINY, "split.kind=inductive", "generator.kind=none", "backbone.kind=lightgcn",
        "aligner.kind=infonce",
    ],
    "cold-start": [*TINY, "generator.kind=mapping", "heads.dropout=0.0"],
}  # fmt: skip

#: losses are float32 means of a few hundred terms summed in another order
LOSS_RTOL = 1e-5
METRIC_ATOL = 1e-6


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
        if not tag.startswith("metrics/")
    }


def _args(config: Path, overrides: list[str], out: Path) -> list[str]:
    """``run CONFIG --set ... --tracking tensorboard``, runs written under ``out``."""
    args = ["run", str(config)]
    for item in [*overrides, f"output_dir={out}"]:
        args += ["--set", item]
    return [*args, "--tracking", "tensorboard"]


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_two_processes_under_torchrun_match_one_process(
    pipeline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = PIPELINES[pipeline]
    one, two = tmp_path / "one", tmp_path / "two"
    monkeypatch.chdir(tmp_path)  # dataset caches
    config = tmp_path / "exp.toml"
    config.write_text('name = "dp"\n')
    single = CliRunner().invoke(app, _args(config, overrides, one))
    assert single.exit_code == 0, single.output
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "cdr", *_args(config, overrides, two), "--nproc", "2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_one], [run_two] = list(one.iterdir()), list(two.iterdir())  # rank 0's dir alone
    assert json.loads((run_two / "status.json").read_text())["state"] == "done"
    assert sorted(p.name for p in run_two.iterdir()) == sorted(p.name for p in run_one.iterdir())
    curves_one, curves_two = _scalars(run_one), _scalars(run_two)
    assert curves_two.keys() == curves_one.keys() and any("loss" in t for t in curves_one)
    for tag, points in curves_one.items():
        steps = [s for s, _ in points]
        assert [s for s, _ in curves_two[tag]] == steps, tag
        for (_, want), (_, got) in zip(points, curves_two[tag], strict=True):
            assert got == pytest.approx(want, rel=LOSS_RTOL, abs=1e-7), tag
    metrics_one = json.loads((run_one / "metrics.json").read_text())
    metrics_two = json.loads((run_two / "metrics.json").read_text())
    assert metrics_two.keys() == metrics_one.keys()
    for key, want in metrics_one.items():
        got = metrics_two[key]
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert got is None or math.isnan(got), key
        else:
            assert got == pytest.approx(want, abs=METRIC_ATOL), key
