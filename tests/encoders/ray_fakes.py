"""Test-only encoder for the Ray engine tests: the counting encoder's features, with every
``embed`` call logged to a file (Ray actors are other processes, so a module-level counter
in the test process cannot see them) and an optional failure with a user-fixable error."""

from __future__ import annotations

import os
import uuid
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import attrs
from encoders.encoder_fakes import CountingConfig, CountingEncoder
from torch import Tensor

from cdr.components import GROUPS, Component, EncoderConfig
from cdr.errors import ModelFileError
from cdr.registry import Registry


@attrs.frozen
class LoggingConfig(EncoderConfig):
    kind: str = "logging"
    dim: int = 4
    batch_size: int = 2
    log_dir: str = ""
    missing_model: bool = False


class LoggingEncoder(CountingEncoder):
    def __init__(self, config: LoggingConfig) -> None:
        super().__init__(CountingConfig(dim=config.dim, batch_size=config.batch_size))
        self.log = Path(config.log_dir)
        self.missing_model = config.missing_model

    def embed(self, batch: list[Any]) -> Tensor:
        if self.missing_model:
            raise ModelFileError("logging model: /nowhere/weights.safetensors is missing")
        (self.log / f"{os.getpid()}-{uuid.uuid4().hex}").write_text(str(len(batch)))
        return super().embed(batch)


def embedded_rows(log_dir: Path) -> int:
    """Rows embedded by every process since ``log_dir`` was emptied."""
    return sum(int(p.read_text()) for p in log_dir.iterdir())


def embedding_processes(log_dir: Path) -> set[str]:
    return {p.name.split("-")[0] for p in log_dir.iterdir()}


logging_component = Component(
    "logging", "encoders", LoggingConfig, lambda c, ctx: LoggingEncoder(c), "test encoder"
)


def registry_with_logging() -> Registry:
    installed = [ep for g in GROUPS for ep in entry_points(group=f"cdr.{g}")]
    fake = EntryPoint("logging", "encoders.ray_fakes:logging_component", "cdr.encoders")
    return Registry([*installed, fake])
