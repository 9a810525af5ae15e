"""Row-wise encoders and the batched loop that drives them.

A ``RowEncoder`` turns one (domain, entity) into a ``Plan``: one input per computed row
(a prompt, an image path...; None for a row without content, which becomes a zero row) and
a ``finish`` step mapping the computed rows to the output matrix (identity for most; the
image encoder averages item rows into user rows). Rows are independent, so the feature
cache can store them in chunks (resume after interruption, ``--shard k/n``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from cdr.data.records import Domain
from cdr.interfaces import Entity
from cdr.progress import Reporter


def _identity(rows: Tensor) -> Tensor:
    return rows


@attrs.frozen(eq=False)
class Plan:
    """inputs: one per computed row (None = zero row); finish: rows [N, D] -> output;
    finish_key: content hash of whatever ``finish`` reads besides the rows ('' if nothing)."""

    inputs: Sequence[Any | None]
    finish: Callable[[Tensor], Tensor] = _identity
    finish_key: str = ""


class RowEncoder(ABC):
    """An Encoder whose rows are computed independently, in batches, from per-row inputs.

    Subclasses load their model lazily (on the first ``embed``), so a cache hit never loads
    weights.
    """

    batch_size: int = 32

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def plan(self, domain: Domain, entity: Entity) -> Plan: ...

    @abstractmethod
    def embed(self, batch: list[Any]) -> Tensor:
        """A batch of non-None inputs -> float32 CPU features [B, dim]."""

    def cost(self, item: Any) -> int:
        """Sort key of length-sorted batching (texts: their length)."""
        return len(item) if isinstance(item, str) else 0

    def encode(self, domain: Domain, entity: Entity, reporter: Reporter | None = None) -> Tensor:
        plan = self.plan(domain, entity)
        rows = embed_rows(self, plan.inputs, reporter=reporter, task=f"encode {entity}s")
        return plan.finish(rows)


def embed_rows(
    encoder: RowEncoder,
    inputs: Sequence[Any | None],
    *,
    reporter: Reporter | None = None,
    task: str = "encode",
    total: int | None = None,
) -> Tensor:
    """Features of ``inputs`` [N, dim]: None rows are zeros, the rest go through ``embed`` in
    batches of similar cost (length-sorted, so little padding) under ``inference_mode``.

    ``total`` is the size shown by the progress bar (defaults to N).
    """
    out = torch.zeros(len(inputs), encoder.dim)
    present = [i for i, x in enumerate(inputs) if x is not None]
    present.sort(key=lambda i: encoder.cost(inputs[i]), reverse=True)  # longest first
    if reporter is not None and total is None:
        reporter(task, advance=0, total=len(inputs))
    skipped = len(inputs) - len(present)
    if reporter is not None and skipped:
        reporter(task, advance=skipped)
    start = time.perf_counter()
    done = 0
    with torch.inference_mode():
        for b in range(0, len(present), encoder.batch_size):
            index = present[b : b + encoder.batch_size]
            feats = encoder.embed([inputs[i] for i in index])  # [B, dim]
            out[torch.tensor(index)] = feats.float().cpu()
            done += len(index)
            if reporter is not None:
                rate = done / max(time.perf_counter() - start, 1e-9)
                reporter(task, advance=len(index), items_per_s=rate)
    return out
