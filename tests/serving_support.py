"""Shared by the serving tests and the serving benchmark: a trained tiny bundle, and
``cdr serve`` in a subprocess on the loopback interface."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cdr.registry import Registry

#: a tiny DDPM run: one epoch of every stage, small U-Net
TINY_DDPM = (
    "dataset.size=tiny",
    "trainer.epochs=1",
    "trainer.batch_size=16",
    "trainer.dim=8",
    "evaluation.ks=[5]",
    "generator.kind=ddpm",
    "generator.steps=3",
    "generator.widths=[16]",
    "generator.hidden=16",
    "generator.time_dim=8",
)


def trained_bundle(
    root: Path, registry: Registry, overrides: Sequence[str] = TINY_DDPM, name: str = "model"
) -> tuple[Path, Path]:
    """Train ``overrides`` (default config + them) in ``root`` and export its bundle:
    ``(run_dir, bundle path)``. The dataset cache (./.cache) stays under ``root``."""
    from cdr.config import load_experiment
    from cdr.experiment import run_experiment
    from cdr.serving.bundle import export_bundle

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        cfg = load_experiment(None, registry, list(overrides))
        run_dir = run_experiment(cfg, registry, run_dir=root / f"{name}-run").run_dir
    return run_dir, export_bundle(run_dir, root / f"{name}.cdr", registry)


def launch_server(
    bundle: Path, log: Path, *args: str, timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], int]:
    """``cdr serve BUNDLE --host 127.0.0.1 --port 0 ARGS``: the process and its port, once
    uvicorn says it listens (the caller checks health and stops it with ``stop_process``)."""
    command = [
        sys.executable,
        "-c",
        "from cdr.cli.app import main; main()",
        "serve",
        str(bundle),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-access-log",
        *args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"cdr serve exited {process.returncode}:\n{log.read_text()}")
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return process, int(found.group(1))
        time.sleep(0.1)
    stop_process(process)
    raise AssertionError(f"cdr serve did not start in {timeout}s:\n{log.read_text()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill after 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
