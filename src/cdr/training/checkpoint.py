"""Checkpoints as one safetensors file: tensors by flat key, everything else as JSON.

A checkpoint is read from disk a user may hand us (``cdr run --resume DIR``), so it must
never run code: no pickle anywhere. A nested state (``state_dict``s, optimizer state,
RNG states, counters) is split into

- tensors, stored by a flat key (``model/layer.weight``, ``optimizer/state/0/exp_avg``), and
- a JSON skeleton with the same nesting, where each tensor is the marker
  ``{"$t": key}``; dicts keep their key types (optimizer states use int keys), tuples
  stay tuples, non-finite floats survive (``{"$f": "inf"}``).

The skeleton is the safetensors header's ``__metadata__["cdr"]`` entry, so one file is
written atomically (temp file, fsync, rename) and a killed run keeps its previous one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors
from torch import Tensor

from cdr.errors import RunError
from cdr.runs import atomic_write_bytes

FORMAT = "cdr-checkpoint/1"
SUFFIX = ".safetensors"


def _encode(value: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, Tensor):
        if key in tensors:
            raise TypeError(f"checkpoint {key}: two tensors under one key")
        # own, contiguous CPU storage: safetensors refuses shared or strided memory
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {"$t": key}
    if isinstance(value, Mapping):
        return {
            "$d": [
                [k, _encode(v, f"{key}/{k}", tensors)]
                for k, v in value.items()
                if _check_key(k, key)
            ]
        }
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {"$f": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint {key}: cannot store a {type(value).__name__}")


def _check_key(k: Any, where: str) -> bool:
    if isinstance(k, bool) or not isinstance(k, str | int):
        raise TypeError(f"checkpoint {where}: key {k!r} is not a str or int")
    return True


def _decode(node: Any, tensors: Mapping[str, Tensor], path: Path) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, path) for v in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"$t"}:
        if node["$t"] not in tensors:
            raise RunError(f"{path}: tensor {node['$t']!r} is missing; the checkpoint is damaged")
        return tensors[node["$t"]]
    if set(node) == {"$f"} and node["$f"] in ("inf", "-inf", "nan"):
        return float(node["$f"])
    if set(node) == {"$tuple"} and isinstance(node["$tuple"], list):
        return tuple(_decode(v, tensors, path) for v in node["$tuple"])
    if set(node) == {"$d"} and isinstance(node["$d"], list):
        out: dict[Any, Any] = {}
        for pair in node["$d"]:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str | int)):
                raise RunError(f"{path}: malformed checkpoint header")
            out[pair[0]] = _decode(pair[1], tensors, path)
        return out
    raise RunError(f"{path}: malformed checkpoint header")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists/tuples of tensors and JSON scalars) to ``path``."""
    tensors: dict[str, Tensor] = {}
    skeleton = _encode(dict(state), "", tensors)
    meta = {"format": FORMAT, "cdr": json.dumps(skeleton, allow_nan=False)}
    atomic_write_bytes(path, save_tensors(tensors, metadata=meta))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; RunError (one line) if it is not one.

    Only safetensors is parsed (a header of JSON and raw tensor bytes): a crafted file can
    at worst be refused, never execute code.
    """
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(f"{path}: not a cdr checkpoint ({reason})") from None
    if meta.get("format") != FORMAT or "cdr" not in meta:
        raise RunError(f"{path}: not a cdr checkpoint (format {meta.get('format')!r})")
    try:
        skeleton = json.loads(meta["cdr"])
    except json.JSONDecodeError:
        raise RunError(f"{path}: malformed checkpoint header") from None
    state = _decode(skeleton, tensors, path)
    if not isinstance(state, dict):
        raise RunError(f"{path}: malformed checkpoint header")
    return state


def rng_state() -> dict[str, Tensor]:
    """The global torch RNG states (CPU and, when present, every CUDA device)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return state


def set_rng_state(state: Mapping[str, Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    cuda = [state[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in state]
    if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
