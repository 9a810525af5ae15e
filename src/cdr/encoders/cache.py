"""On-disk feature cache (safetensors), keyed by encoder config and a content hash of the data.

Layout under ``cache_root``::

    <kind>-<key>/
        key.json                      what the key was made of (for humans)
        chunks/<start>-<stop>.safetensors   computed rows [stop - start, D] (row encoders)
        <entity>-<finish>.safetensors       the finished feature matrix

``key`` hashes the encoder config (model id/path, prompt, pooling, ...) and the exact inputs
it encodes (prompts / image files), so a change to either misses. Chunks are written one by
one and atomically: an interrupted run keeps its completed chunks and resumes after them;
``--shard k/n`` runs write disjoint chunks into the same directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from safetensors.torch import load, save
from torch import Tensor

from cdr.data.records import Domain
from cdr.runs import atomic_write_bytes, atomic_write_text

#: bump when the meaning of cached features changes (invalidates every cache entry).
CACHE_VERSION = 1

_CHUNK = re.compile(r"^(\d+)-(\d+)\.safetensors$")


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


def config_description(config: Any) -> dict[str, Any]:
    """An encoder config as JSON-able data (Paths and other objects as strings)."""
    data = attrs.asdict(config, recurse=True) if attrs.has(type(config)) else dict(vars(config))
    return {"config_class": type(config).__qualname__, **json.loads(json.dumps(data, default=str))}


def inputs_digest(inputs: Sequence[Any | None]) -> str:
    """Content hash of a plan's inputs (strings by their text, other records by ``repr``)."""
    h = _hasher()
    for x in inputs:
        text = "\x00none" if x is None else x if isinstance(x, str) else repr(x)
        data = text.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def tensors_digest(tensors: Iterable[Tensor]) -> str:
    h = _hasher()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def domain_digest(domain: Domain) -> str:
    """Content hash of everything a domain holds (for encoders without row inputs)."""
    items = domain.items
    inter = domain.interactions
    parts = [
        str(domain.num_users),
        inputs_digest(domain.item_ids),
        inputs_digest(items.title),
        inputs_digest(items.description),
        inputs_digest(["\x1f".join(c) for c in items.categories]),
        inputs_digest(list(items.image)),
        inputs_digest(list(domain.reviews or ())),
        tensors_digest([inter.user, inter.item, inter.rating, inter.timestamp]),
    ]
    return digest(*parts)


def digest(*parts: str) -> str:
    h = _hasher()
    for p in parts:
        data = p.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@attrs.frozen
class FeatureCache:
    """One cache entry directory: ``root/<kind>-<key>``."""

    root: Path
    kind: str
    key: str

    @classmethod
    def for_config(cls, root: Path, config: Any, data_key: str) -> FeatureCache:
        description = config_description(config)
        key = digest(json.dumps(description, sort_keys=True), data_key, str(CACHE_VERSION))
        cache = cls(root, str(getattr(config, "kind", type(config).__name__)), key[:24])
        if not cache.key_file.exists():
            text = json.dumps({"config": description, "data": data_key}, indent=2, sort_keys=True)
            atomic_write_text(cache.key_file, text)
        return cache

    @property
    def path(self) -> Path:
        return self.root / f"{self.kind}-{self.key}"

    @property
    def key_file(self) -> Path:
        return self.path / "key.json"

    def result_path(self, name: str) -> Path:
        return self.path / f"{name}.safetensors"

    def chunk_path(self, start: int, stop: int) -> Path:
        return self.path / "chunks" / f"{start:09d}-{stop:09d}.safetensors"

    def completed_chunks(self) -> set[tuple[int, int]]:
        folder = self.path / "chunks"
        if not folder.is_dir():
            return set()
        found = (_CHUNK.match(p.name) for p in folder.iterdir())
        return {(int(m.group(1)), int(m.group(2))) for m in found if m}

    def save(self, path: Path, features: Tensor, **meta: str) -> None:
        atomic_write_bytes(path, save({"features": features.contiguous()}, metadata=meta or None))

    def load(self, path: Path) -> Tensor | None:
        """The tensor stored at ``path``, or None if absent or unreadable (then recomputed)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return load(data)["features"]
        except Exception:  # a corrupt file (e.g. disk full) is recomputed, not fatal
            return None
