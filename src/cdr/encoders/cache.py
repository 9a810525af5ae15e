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

Chunks of text rows also store each row's key (a hash of its text), and a run that misses
its own entry first looks for its texts among the chunks of every entry of the same encoder
config (``RowBank``): the cold-start protocol encodes the target domain as each split lets
training see it, so splits share most users' prompts, and those rows are encoded once, not
once per split. This assumes a row's features do not depend on the rows batched with it
(for the ``llm`` encoder, rows embedded alone and in a padded batch of 24 agreed exactly on
this machine, max |diff| 0.0); inputs other than text (images) are not reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
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


#: bytes of a row key (a blake2b digest of the row's text)
KEY_BYTES = 16


def row_keys(inputs: Sequence[Any | None]) -> Tensor:
    """[N, KEY_BYTES] uint8: each text input's hash; zeros for None and non-text inputs."""
    keys = torch.zeros(len(inputs), KEY_BYTES, dtype=torch.uint8)
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            digest_bytes = hashlib.blake2b(x.encode(), digest_size=KEY_BYTES).digest()
            keys[i] = torch.frombuffer(bytearray(digest_bytes), dtype=torch.uint8)
    return keys


@attrs.frozen
class RowBank:
    """Rows already encoded under one encoder config, by key: the union of the keyed chunks
    of every cache entry (any inputs) whose config equals ``config``."""

    rows: dict[bytes, Tensor]

    @classmethod
    def collect(cls, cache: FeatureCache, config: Any) -> RowBank:
        """The bank of ``cache``'s siblings (its entry included) made with ``config``."""
        description = config_description(config)
        root = cache.root
        rows: dict[bytes, Tensor] = {}
        for entry in sorted(root.glob(f"{cache.kind}-*")) if root.is_dir() else ():
            try:
                same = json.loads((entry / "key.json").read_text())["config"] == description
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if not same or not (entry / "chunks").is_dir():
                continue
            for chunk in sorted((entry / "chunks").glob("*.safetensors")):
                try:
                    data = load(chunk.read_bytes())
                except Exception:  # unreadable chunks are someone else's to recompute
                    continue
                if "keys" not in data:
                    continue
                keyed = (data["keys"] != 0).any(dim=1)
                for key, row in zip(data["keys"][keyed], data["features"][keyed], strict=True):
                    rows[bytes(key.tolist())] = row
        return cls(rows)

    def lookup(self, keys: Tensor) -> dict[int, Tensor]:
        """Positions of ``keys`` [N, KEY_BYTES] found in the bank -> their rows."""
        found: dict[int, Tensor] = {}
        for i in (keys != 0).any(dim=1).nonzero().flatten().tolist():
            row = self.rows.get(bytes(keys[i].tolist()))
            if row is not None:
                found[i] = row
        return found


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

    def save_chunk(self, start: int, stop: int, rows: Tensor, keys: Tensor) -> None:
        """Rows [stop - start, D] with their keys [stop - start, KEY_BYTES] (0 = no key)."""
        tensors = {"features": rows.contiguous(), "keys": keys.contiguous()}
        atomic_write_bytes(self.chunk_path(start, stop), save(tensors))

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
