"""A real ``cdr compose`` process killed with SIGKILL inside each training stage of the
cold-start protocol resumes (``cdr run --resume``) from that stage's checkpoint and ends
with the metrics file of an uninterrupted run, byte for byte. (Every stage of every
protocol is interrupted in-process in ``test_resume.py``; the composed protocol's
backbones are killed in ``test_composed.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdr.training.checkpoint import load_checkpoint

ARGS = [
    "--set", "dataset.size=tiny", "--set", "trainer.epochs=150", "--set", "trainer.patience=150",
    "--set", "trainer.batch_size=8", "--set", "evaluation.ks=[5]",
]  # fmt: skip


def _cdr(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", "from cdr.cli.app import main; main()", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    cwd = tmp_path_factory.mktemp("kill")
    proc = _cdr("compose", "--out", "whole", *ARGS, cwd=cwd)
    assert proc.wait(timeout=900) == 0, proc.stderr.read() if proc.stderr else ""
    return cwd, (cwd / "whole" / "metrics.json").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage0", "stage1", "stage2"])
def test_sigkill_inside_a_stage_then_resume(
    uninterrupted: tuple[Path, bytes], stage: str
) -> None:
    cwd, expected = uninterrupted
    run = cwd / f"killed-{stage}"
    last = run / "checkpoints" / f"{stage}.last.safetensors"
    proc = _cdr("compose", "--out", run.name, *ARGS, cwd=cwd)
    deadline = time.monotonic() + 600
    while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), f"{stage} never checkpointed"
    assert not (run / "checkpoints" / f"{stage}.done.safetensors").exists()  # killed inside
    killed_at = int(load_checkpoint(last)["epoch"])
    resumed = _cdr("run", "--resume", str(run), cwd=cwd)
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read() if resumed.stderr else ""
    assert killed_at < 149  # the stage had epochs left to run after the resume
    assert (run / "metrics.json").read_bytes() == expected
