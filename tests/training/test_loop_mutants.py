"""Tests that kill surviving mutants of cdr.training.loop (docs/testing.md): what fit()
reports (task, totals, per-epoch means of the loss and its parts, validation values), when
it validates, the module's train/eval mode, the result without validation, a finished
stage restored from its checkpoint, and the divergence messages."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from torch import Tensor, nn

from cdr.errors import DivergenceError
from cdr.training.loop import Budget, Stage, fit


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int | None, dict[str, float]]] = []

    def __call__(
        self, task: str, advance: int = 1, total: int | None = None, **info: float
    ) -> None:
        self.calls.append((task, advance, total, info))


def _stage(
    epochs: int = 5,
    eval_every: int = 2,
    validate: bool = True,
    task: str | None = None,
    modes: list[tuple[str, bool]] | None = None,
    loss_value: float = 1.0,
) -> Stage[int]:
    """Batches 0, 1, 2 each epoch; loss_b = loss_value * (b + 1) with a part "half" = loss / 2
    (no optimizer: the values are exact); validation returns 10 - epoch."""
    module = nn.Linear(1, 1)
    seen = modes if modes is not None else []
    epoch_box = [0]

    def batches(epoch: int) -> list[int]:
        epoch_box[0] = epoch
        return [0, 1, 2]

    def loss(batch: int) -> tuple[Tensor, dict[str, float]]:
        seen.append(("loss", module.training))
        value = torch.tensor(loss_value * (batch + 1))
        return value, {"half": float(value) / 2}

    def val() -> float:
        seen.append(("validate", module.training))
        return 10.0 - epoch_box[0]

    return Stage(
        name="toy",
        module=module,
        optimizer=None,
        batches=batches,
        loss=loss,
        budget=Budget(epochs, eval_every, 10, "min"),
        validate=val if validate else None,
        task=task,
    )


def test_reports_task_totals_means_and_validation_values() -> None:
    record, modes = _Recorder(), []
    result = fit(_stage(modes=modes), None, record)
    assert record.calls[0] == ("toy", 0, 5, {})  # the task defaults to the stage name
    epochs = record.calls[1:]
    assert len(epochs) == 5
    for epoch, (task, advance, total, info) in enumerate(epochs):
        assert (task, advance, total) == ("toy", 1, None)
        assert info["loss"] == pytest.approx(2.0) and info["half"] == pytest.approx(1.0)
        # validated every 2nd epoch and at the last one
        assert ("val" in info) == (epoch in (1, 3, 4)), epoch
        if "val" in info:
            assert info["val"] == 10.0 - epoch
    assert (result.best, result.best_epoch, result.epochs_run, result.resumed_at) == (6.0, 4, 5, 0)
    assert not result.skipped
    assert {m for kind, m in modes if kind == "loss"} == {True}  # trains in train mode
    assert {m for kind, m in modes if kind == "validate"} == {False}  # validates in eval
    named = _Recorder()
    fit(_stage(task="stage 2"), None, named)
    assert {call[0] for call in named.calls} == {"stage 2"}


def test_without_validation_the_result_has_no_best() -> None:
    stage = _stage(validate=False)
    result = fit(stage, None)
    assert math.isnan(result.best) and result.best_epoch == -1 and result.epochs_run == 5
    assert not stage.module.training  # left in eval mode


def test_a_finished_stage_is_restored_not_rerun(tmp_path: Path) -> None:
    first = fit(_stage(epochs=3, eval_every=1), tmp_path)
    record = _Recorder()
    again = fit(_stage(epochs=3, eval_every=1), tmp_path, record)
    assert again.skipped and record.calls == [("toy", 3, 3, {})]
    assert (again.best, again.best_epoch, again.epochs_run) == (
        first.best,
        first.best_epoch,
        first.epochs_run,
    )
    assert again.resumed_at == first.epochs_run


def test_divergence_messages_name_stage_epoch_and_step(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match=re.escape("toy: loss is nan at epoch 1, step 1")):
        fit(_stage(loss_value=math.nan), None)
    stage = _stage(epochs=3, eval_every=1)
    bad = Stage(
        name="toy",
        module=stage.module,
        optimizer=None,
        batches=stage.batches,
        loss=stage.loss,
        budget=stage.budget,
        validate=lambda: math.nan,
    )
    with pytest.raises(DivergenceError, match=re.escape("toy: validation value is nan at epoch 1")):
        fit(bad, None)


def test_nonfinite_parameters_stop_with_the_checkpoint_named(tmp_path: Path) -> None:
    module = nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=1.0)

    def loss(batch: Any) -> Tensor:
        out = module(torch.ones(1, 1)).sum()
        return out * (1e38 if batch == "boom" else 0.0)

    calls = [0]

    def batches(epoch: int) -> list[str]:
        calls[0] += 1
        return ["ok"] if epoch == 0 else ["boom", "boom"]

    stage: Stage[Any] = Stage(
        name="lin",
        module=module,
        optimizer=opt,
        batches=batches,
        loss=loss,
        budget=Budget(3, 1, 5, "min"),
        validate=lambda: 1.0,
    )
    with pytest.raises(DivergenceError) as err:
        fit(stage, tmp_path)
    message = str(err.value)
    assert message.startswith("lin: ")
    assert "at epoch 2" in message
    assert f"the last good checkpoint is kept ({tmp_path / 'lin.last.safetensors'})" in message


def test_early_stopping_from_scratch_in_both_modes() -> None:
    from cdr.training.early_stopping import EarlyStopping

    default = EarlyStopping(2)  # mode "max" by default
    assert (default.mode, default.best, default.best_epoch, default.bad_epochs) == (
        "max",
        -math.inf,
        -1,
        0,
    )
    assert default.best_state is None
    assert EarlyStopping(2, mode="min").best == math.inf
    with pytest.raises(ValueError, match=re.escape("mode: 'MAX' is not 'max' or 'min'")):
        EarlyStopping(2, mode="MAX")
    model = nn.Linear(1, 1)
    high = EarlyStopping(1, mode="max")
    assert not high.step(0.5, 0, model)  # any first value improves on -inf
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.fill_(7.0)  # the kept state is a deep copy
    assert not high.step(0.5, 1)  # equal is not better: one bad epoch
    assert high.step(0.4, 2)  # two bad epochs > patience 1: stop
    assert (high.best, high.best_epoch, high.bad_epochs) == (0.5, 0, 2)
    high.restore(model)
    torch.testing.assert_close(model.weight, snapshot["weight"])
    low = EarlyStopping(0, mode="min")
    assert not low.step(3.0, 0) and low.best_state is None  # no model: nothing kept
    assert low.step(3.0, 1)  # equal is not better in "min" either
    untouched = nn.Linear(1, 1)
    before = untouched.weight.detach().clone()
    low.restore(untouched)  # nothing kept: the model stays as it is
    torch.testing.assert_close(untouched.weight.detach(), before)


def test_in_last_tenth_of_the_budget() -> None:
    from cdr.training.loop import FitResult

    budget = Budget(20)
    assert FitResult(1.0, 19, 20).in_last_tenth(budget)
    assert not FitResult(1.0, 17, 20).in_last_tenth(budget)  # epoch 18 of 20 is not > 18
    assert not FitResult(1.0, 0, 20).in_last_tenth(Budget(20))
    assert FitResult(1.0, 0, 1).in_last_tenth(Budget(1))  # epoch 1 of 1
    assert not FitResult(math.nan, -1, 20).in_last_tenth(budget)  # no validation


def test_finite_check_of_parameters() -> None:
    from cdr.training.loop import _finite

    module = nn.Linear(2, 1)
    assert _finite(module)
    with torch.no_grad():
        module.bias.fill_(math.inf)
    assert not _finite(module)
    assert _finite(nn.ReLU())  # no parameters: nothing to check


def test_checkpoint_round_trip_of_nested_tensors_and_special_floats(tmp_path: Path) -> None:
    from cdr.training.checkpoint import load_checkpoint, save_checkpoint

    t1, t2, t3 = torch.arange(3.0), torch.ones(2, 2), torch.tensor([7], dtype=torch.long)
    state = {
        "list": [t1, (t2, 1.5), "text"],
        "ints": {3: t3, "x": None},
        "floats": [math.inf, -math.inf, math.nan, 0.25],
    }
    save_checkpoint(tmp_path / "c.safetensors", state)
    back = load_checkpoint(tmp_path / "c.safetensors")
    torch.testing.assert_close(back["list"][0], t1)
    assert isinstance(back["list"][1], tuple)
    torch.testing.assert_close(back["list"][1][0], t2)
    assert back["list"][1][1] == 1.5 and back["list"][2] == "text"
    torch.testing.assert_close(back["ints"][3], t3)
    assert back["ints"]["x"] is None
    inf, ninf, nan, q = back["floats"]
    assert inf == math.inf and ninf == -math.inf and math.isnan(nan) and q == 0.25
    with pytest.raises(TypeError, match=re.escape("key True is not a str or int")):
        save_checkpoint(tmp_path / "bad.safetensors", {"d": {True: 1}})


def test_best_state_is_restored_and_epochs_are_announced(tmp_path: Path) -> None:
    """mode max, validation 0, -1, -2, ...: the best is epoch 0, whose weights come back;
    on_epoch sees every epoch; evaluation every 3rd epoch and at the last."""
    module = nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    seen: list[int] = []
    after_epoch0: dict[str, Tensor] = {}

    def on_epoch(epoch: int) -> None:
        seen.append(epoch)
        if epoch == 1:
            after_epoch0.update({k: v.clone() for k, v in module.state_dict().items()})

    current = [0]

    def batches(epoch: int) -> list[int]:
        current[0] = epoch
        return [0]  # one step per epoch: the mean is the one loss

    def loss(_: int) -> Tensor:
        return (module(torch.ones(1, 1)) - 5.0).square().sum()

    first_loss = float(loss(0).detach())
    record = _Recorder()
    stage: Stage[int] = Stage(
        name="sgd",
        module=module,
        optimizer=opt,
        batches=batches,
        loss=loss,
        budget=Budget(7, 3, 10, "max"),
        validate=lambda: -float(current[0]),
        on_epoch=on_epoch,
    )
    result = fit(stage, tmp_path, record)
    assert seen == list(range(7))
    validated = [i for i, call in enumerate(record.calls[1:]) if "val" in call[3]]
    assert validated == [2, 5, 6]
    assert (result.best, result.best_epoch) == (-2.0, 2)
    weights = module.state_dict()
    assert not torch.equal(weights["weight"], after_epoch0["weight"])  # epoch 0 is not best
    assert record.calls[1][3]["loss"] == pytest.approx(first_loss)  # one step: its loss


def test_best_at_epoch_zero_and_an_empty_budget(tmp_path: Path) -> None:
    module = nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    states: list[dict[str, Tensor]] = []
    current = [0]

    def batches(epoch: int) -> list[int]:
        current[0] = epoch
        return [0]

    def loss(_: int) -> Tensor:
        return (module(torch.ones(1, 1)) - 5.0).square().sum()

    def validate() -> float:
        states.append({k: v.clone() for k, v in module.state_dict().items()})
        return -float(current[0])

    stage: Stage[int] = Stage(
        name="zero",
        module=module,
        optimizer=opt,
        batches=batches,
        loss=loss,
        budget=Budget(4, 1, 10, "max"),
        validate=validate,
    )
    result = fit(stage, tmp_path)
    assert (result.best, result.best_epoch) == (0.0, 0)
    torch.testing.assert_close(module.state_dict()["weight"], states[0]["weight"])
    empty = Stage(
        name="empty",
        module=nn.Linear(1, 1),
        optimizer=None,
        batches=batches,
        loss=loss,
        budget=Budget(0),
        validate=validate,
    )
    nothing = fit(empty, tmp_path)
    assert nothing.epochs_run == 0 and nothing.best_epoch == -1 and math.isnan(nothing.best)


class _Interrupt(Exception):
    """Raised from on_epoch: the run stops there, like a killed process."""


def _sgd_stage(
    epochs: int,
    eval_every: int,
    values: list[float] | None,
    stop_at: int | None = None,
    starts: list[dict[str, Tensor]] | None = None,
) -> Stage[int]:
    """One SGD step per epoch towards w = 5 (weights differ every epoch); validation
    returns ``values[epoch]`` (mode min), or none; ``on_epoch`` records the weights each
    epoch starts from and raises _Interrupt at ``stop_at``."""
    torch.manual_seed(0)
    module = nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    current = [0]

    def on_epoch(epoch: int) -> None:
        current[0] = epoch
        if starts is not None:
            starts.append({k: v.clone() for k, v in module.state_dict().items()})
        if epoch == stop_at:
            raise _Interrupt

    def loss(_: int) -> Tensor:
        return (module(torch.ones(1, 1)) - 5.0).square().sum()

    return Stage(
        name="cut",
        module=module,
        optimizer=opt,
        batches=lambda epoch: [0],
        loss=loss,
        budget=Budget(epochs, eval_every, 10, "min"),
        validate=None if values is None else (lambda: values[current[0]]),
        on_epoch=on_epoch,
    )


def test_the_last_checkpoint_is_written_at_evaluations_or_every_epoch_without_them(
    tmp_path: Path,
) -> None:
    from cdr.training.checkpoint import load_checkpoint

    for name, eval_every, values, saved in (
        ("plain", 1, None, 2),  # no validation: every epoch is kept
        ("every2", 2, [5.0, 4.0, 3.0, 2.0, 1.0], 1),  # epochs 1, 3: the evaluated ones
    ):
        folder = tmp_path / name
        with pytest.raises(_Interrupt):
            fit(_sgd_stage(5, eval_every, values, stop_at=3), folder)
        assert load_checkpoint(folder / "cut.last.safetensors")["epoch"] == saved, name
        resumed = fit(_sgd_stage(5, eval_every, values), folder)
        assert resumed.resumed_at == saved + 1 and resumed.epochs_run == 5, name


def test_a_resumed_run_still_ends_on_its_best_weights(tmp_path: Path) -> None:
    """Validation 3, 1, 2, 4, 5, 6 (min): the best is epoch 1, evaluated before the cut at
    epoch 3; the resumed run must come back to epoch 1's weights (those epoch 2 started
    from), as the uninterrupted run does."""
    values = [3.0, 1.0, 2.0, 4.0, 5.0, 6.0]
    starts: list[dict[str, Tensor]] = []
    whole = _sgd_stage(6, 1, values, starts=starts)
    result = fit(whole, tmp_path / "whole")
    best = starts[2]["weight"]
    torch.testing.assert_close(whole.module.state_dict()["weight"], best)
    with pytest.raises(_Interrupt):
        fit(_sgd_stage(6, 1, values, stop_at=3), tmp_path / "cut")
    resumed_stage = _sgd_stage(6, 1, values)
    resumed = fit(resumed_stage, tmp_path / "cut")
    assert resumed.resumed_at == 3
    assert (resumed.best, resumed.best_epoch) == (result.best, result.best_epoch) == (1.0, 1)
    torch.testing.assert_close(resumed_stage.module.state_dict()["weight"], best)
    assert not torch.equal(starts[-1]["weight"], best)  # the last weights are not the best


def test_a_divergence_message_is_exactly_stage_what_and_epoch() -> None:
    stage = _stage(epochs=3, eval_every=1)
    bad = attrs.evolve(stage, validate=lambda: math.nan)
    with pytest.raises(DivergenceError) as err:
        fit(bad, None)
    assert str(err.value) == "toy: validation value is nan at epoch 1"
    assert err.value.hint == "lower the learning rate (trainer.lr) or check the input data"


# -- the data-parallel branch of fit, in one process ----------------------------------------
# A gloo group of one process stands in for the job, and fit is told it is rank r of 2: the
# collectives then act on this process alone (the all-reduce sums one contribution), so
# rank r's step is exactly (n_r / N) * the gradient of its rows' mean, which the tests
# restate in float64 (least squares, closed form). Real ranks: tests/training/
# test_distributed.py.

_X = torch.tensor(
    [[1.0, 2.0], [0.0, 1.0], [3.0, -1.0], [2.0, 2.0], [-1.0, 0.5]], dtype=torch.float64
)
_Y = torch.tensor([1.0, -1.0, 2.0, 0.5, 0.0], dtype=torch.float64)
_W0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
_LR = 0.1
_BATCHES = (_X, _X / 2)


@pytest.fixture
def group_of_one() -> Any:
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _ls_stage(rows: int, *, validate: bool, parts: bool, shard: Any = "default") -> Stage[Any]:
    """Least squares on the first ``rows`` rows, two batches (steps) per epoch: _X, then
    _X / 2; validation 10 - epoch (min: the last epoch is the best)."""
    module = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        module.weight.copy_(_W0[None])
    epoch_box = [0]

    def batches(epoch: int) -> list[tuple[Tensor, Tensor]]:
        epoch_box[0] = epoch
        return [(x[:rows], _Y[:rows]) for x in _BATCHES]

    def loss(batch: tuple[Tensor, Tensor]) -> Any:
        x, y = batch
        mse = (module(x).squeeze(1) - y).square().mean()
        return (mse, {"mse": 2 * float(mse.detach())}) if parts else mse

    extra = {} if shard == "default" else {"shard": shard}
    return Stage(
        name="ls",
        module=module,
        optimizer=torch.optim.SGD(module.parameters(), lr=_LR),
        batches=batches,
        loss=loss,
        budget=Budget(2, 1, 10, "min"),
        validate=(lambda: 10.0 - epoch_box[0]) if validate else None,
        **extra,
    )


def _rank_steps(rows: slice, weight: float, epochs: int) -> tuple[Tensor, list[float]]:
    """float64, per step: w <- w - lr * weight * (2 / n) X_r^T (X_r w - y_r); the reported
    loss of an epoch is the mean of its steps' weight * mse."""
    y, w = _Y[rows], _W0.clone()
    losses = []
    for _ in range(epochs):
        step_losses = []
        for x in (batch[rows] for batch in _BATCHES):
            residual = x @ w - y
            step_losses.append(weight * float(residual.square().mean()))
            w = w - _LR * weight * (2.0 / len(y)) * (x.T @ residual)
        losses.append(sum(step_losses) / len(step_losses))
    return w, losses


def test_rank_zero_of_two_steps_on_its_weighted_rows_and_alone_reports_and_checkpoints(
    group_of_one: None, tmp_path: Path
) -> None:
    """Rank 0 holds rows 0-2 of 5 (weight 3/5, an uneven split)."""
    from cdr.training.distributed import World

    stage, record = _ls_stage(5, validate=True, parts=True), _Recorder()
    result = fit(stage, tmp_path, record, world=World(0, 2))
    weights, losses = _rank_steps(slice(0, 3), 3 / 5, 2)
    torch.testing.assert_close(stage.module.weight.detach()[0], weights, rtol=1e-12, atol=0)
    assert record.calls[0] == ("ls", 0, 2, {})
    for epoch, (task, advance, total, info) in enumerate(record.calls[1:]):
        assert (task, advance, total) == ("ls", 1, None)
        assert info["loss"] == pytest.approx(losses[epoch], rel=1e-12)
        assert info["mse"] == pytest.approx(2 * losses[epoch], rel=1e-12)
        assert info["val"] == 10.0 - epoch
    assert (result.best, result.best_epoch, result.epochs_run) == (9.0, 1, 2)
    assert (tmp_path / "ls.done.safetensors").exists()


def test_another_rank_steps_on_its_rows_and_reports_and_writes_nothing(
    group_of_one: None, tmp_path: Path
) -> None:
    """Rank 1 holds rows 2-3 of 4 (weight 1/2); a loss without parts; no validation."""
    from cdr.training.distributed import World

    stage, record = _ls_stage(4, validate=False, parts=False), _Recorder()
    result = fit(stage, tmp_path, record, world=World(1, 2))
    weights, _ = _rank_steps(slice(2, 4), 1 / 2, 2)
    torch.testing.assert_close(stage.module.weight.detach()[0], weights, rtol=1e-12, atol=0)
    assert record.calls == [] and list(tmp_path.iterdir()) == []
    assert result.epochs_run == 2 and result.best_epoch == -1


def test_a_batch_that_cannot_be_split_names_the_stage(group_of_one: None) -> None:
    from cdr.errors import CompositionError
    from cdr.training.distributed import World

    stage = _ls_stage(4, validate=False, parts=True)
    ragged = attrs.evolve(stage, batches=lambda epoch: [(_X[:4], _Y[:3])])
    with pytest.raises(CompositionError) as err:
        fit(ragged, None, world=World(0, 2))
    assert str(err.value) == (
        "stage 'ls': data-parallel training: the batch's tensors have different first dims "
        "[3, 4]; which of them are rows is ambiguous"
    )
    assert (
        err.value.hint == "give the stage a shard function (Stage.shard) or run it in one process"
    )


def test_a_stage_without_a_shard_runs_in_one_process_and_is_refused_on_two() -> None:
    from cdr.errors import CompositionError
    from cdr.training.distributed import World

    stage = _ls_stage(4, validate=False, parts=False, shard=None)
    fit(stage, None)  # one process: the batch is never split
    weights, _ = _rank_steps(slice(0, 4), 1.0, 2)
    torch.testing.assert_close(stage.module.weight.detach()[0], weights, rtol=1e-12, atol=0)
    with pytest.raises(CompositionError) as err:
        fit(_ls_stage(4, validate=False, parts=False, shard=None), None, world=World(0, 2))
    assert str(err.value) == "stage 'ls': its batches cannot be split across 2 ranks"
    assert err.value.hint == "run it in one process (without --nproc / torchrun)"


def test_a_diverging_loss_on_a_rank_names_stage_epoch_step_and_checkpoint(
    group_of_one: None, tmp_path: Path
) -> None:
    from cdr.training.distributed import World

    stage = _ls_stage(4, validate=True, parts=True)
    good = stage.batches

    def batches(epoch: int) -> list[tuple[Tensor, Tensor]]:
        out = good(epoch)
        return out if epoch == 0 else [out[0], (out[1][0], torch.full((4,), math.nan))]

    with pytest.raises(DivergenceError) as err:
        fit(attrs.evolve(stage, batches=batches), tmp_path, world=World(0, 2))
    assert str(err.value) == (
        "ls: loss is nan at epoch 2, step 2; the last good checkpoint is kept "
        f"({tmp_path / 'ls.last.safetensors'})"
    )


def test_non_finite_parameters_and_validation_messages_are_exact(tmp_path: Path) -> None:
    """A finite loss whose step overflows the float32 parameters at the 2nd epoch; a NaN
    validation value at the 2nd epoch. Both after epoch 1's checkpoint."""
    module = nn.Linear(1, 1)
    opt = torch.optim.SGD(module.parameters(), lr=1e30)
    current = [0]

    def batches(epoch: int) -> list[int]:
        current[0] = epoch
        return [0]

    def loss(_: int) -> Tensor:
        return module(torch.ones(1, 1)).sum() * (1e30 if current[0] == 1 else 0.0)

    stage: Stage[int] = Stage(
        name="lin",
        module=module,
        optimizer=opt,
        batches=batches,
        loss=loss,
        budget=Budget(3, 1, 5, "min"),
        validate=lambda: 1.0,
    )
    with pytest.raises(DivergenceError) as err:
        fit(stage, tmp_path / "a")
    assert str(err.value) == (
        "lin: parameters became non-finite at epoch 2; the last good checkpoint is kept "
        f"({tmp_path / 'a' / 'lin.last.safetensors'})"
    )
    toy = _stage(epochs=3, eval_every=1)
    values = iter([1.0, math.nan])
    with pytest.raises(DivergenceError) as err:
        fit(attrs.evolve(toy, validate=lambda: next(values)), tmp_path / "b")
    assert str(err.value) == (
        "toy: validation value is nan at epoch 2; the last good checkpoint is kept "
        f"({tmp_path / 'b' / 'toy.last.safetensors'})"
    )
