"""Resume from an interruption inside every stage of every pipeline: the resumed run
continues from the stage's checkpoint (earlier epochs are not run again, finished stages
are restored, not retrained) and ends with the same metrics file, byte for byte, as an
uninterrupted run with the same seed.

The interruption is a KeyboardInterrupt raised from the progress reporter right after the
loop reports (and so after it checkpointed) an epoch, exactly where Ctrl-C would land;
``test_composed.py`` kills a real subprocess with SIGKILL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdr.config import load_experiment
from cdr.experiment import resume_experiment, run_experiment, run_status
from cdr.registry import Registry

TINY = ["dataset.size=tiny", "trainer.batch_size=16", "evaluation.ks=[5]", "trainer.patience=50"]

#: pipeline -> (overrides, components, [(task name, epochs before the interruption)])
CASES = {
    "cold-start": (
        [*TINY, "trainer.epochs=4"],
        None,
        [
            ("stage 0: target space", 2),
            ("stage 1: side users", 2),
            ("stage 2: overlapping users", 2),
        ],
    ),
    "inductive": (
        [*TINY, "trainer.epochs=4", "backbone.multimodal=false"],
        {"generator": "none", "backbone": "inmo", "aligner": "infonce"},
        [("train epoch", 2)],
    ),
    "composed": (
        [*TINY, "trainer.epochs=3", "backbone.multimodal=false"],
        {"generator": "ddpm", "backbone": "inmo"},
        [
            ("backbones", 2),
            ("generator stage 1: side users", 1),
            ("generator stage 2: overlapping users", 2),
        ],
    ),
}


class Interrupter:
    """A reporter that records every task's epochs and interrupts once, after ``after``
    epochs of ``task`` were reported."""

    def __init__(self, task: str | None = None, after: int = 0) -> None:
        self.task, self.after = task, after
        self.starts: dict[str, int] = {}  # task -> epoch it (re)started from
        self.epochs: dict[str, int] = {}  # task -> epochs reported in this session

    def __call__(self, task: str, advance: int = 1, total: int | None = None, **_: float) -> None:
        if total is not None:
            self.starts.setdefault(task, advance)
            return
        self.epochs[task] = self.epochs.get(task, 0) + advance
        if task == self.task and self.epochs[task] == self.after:
            raise KeyboardInterrupt


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> object:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("cache"))
        yield None


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", list(CASES))
def test_resume_inside_every_stage_gives_byte_identical_metrics(
    pipeline: str, tmp_path: Path
) -> None:
    overrides, components, stages = CASES[pipeline]
    registry = Registry()
    cfg = load_experiment(None, registry, overrides, components)
    whole = Interrupter()
    run_experiment(cfg, registry, run_dir=tmp_path / "whole", reporter=whole)
    expected = (tmp_path / "whole" / "metrics.json").read_bytes()
    for task, _ in stages:
        assert whole.epochs.get(task, 0) >= 2 or task.startswith("generator stage 1"), task

    for index, (task, after) in enumerate(stages):
        run_dir = tmp_path / f"cut-{index}"
        first = Interrupter(task, after)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(cfg, registry, run_dir=run_dir, reporter=first)
        assert run_status(run_dir)["state"] == "interrupted"
        second = Interrupter()
        resume_experiment(run_dir, registry, reporter=second)
        assert run_status(run_dir)["state"] == "done"
        # the interrupted stage continued after its last checkpoint ...
        assert second.starts[task] == after, (task, second.starts)
        # ... and the stages before it were restored, not retrained
        for earlier, _ in stages[:index]:
            assert second.epochs.get(earlier, 0) == 0, earlier
        got = (run_dir / "metrics.json").read_bytes()
        if got != expected:  # name the metrics that moved
            import json

            a, b = json.loads(expected), json.loads(got)
            moved = {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
            raise AssertionError(f"{task}: metrics differ after resume: {moved}")
