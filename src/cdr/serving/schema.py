"""What a valid bundle is, and the checks that hold every bundle to it before it is served.

A bundle (``model.cdr``) is a zip archive read into memory (nothing is ever extracted to
disk) with exactly these members, at most ``MEMBER_LIMITS`` bytes each once uncompressed,
stored or deflated, unencrypted:

``meta.json`` (required): a UTF-8 JSON object with
    ``format``: ``"cdr-bundle/1"`` (``FORMAT``);
    ``user_ids``, ``source_item_ids``, ``target_item_ids``: lists of unique strings
    (U, Is and It of them; It >= 1);
    ``generator``: ``null`` or ``{"kind": str, "dim": int, "in_dim": int}``;
    ``config``: an object, the resolved experiment config (rebuilds the generator).
    Other keys are ignored.

``tensors.safetensors`` (required), exactly these tensors:
    ``source_users [U, Ds]``, ``target_users [U, D]``, ``source_items [Is, Ds]``,
    ``target_items [It, D]``, ``fold_in [Ds, Ds]``: floating point, finite, D and Ds >= 1;
    ``seen_user [E]``, ``seen_item [E]``: integers in [0, U) and [0, It).
    With a generator, ``in_dim == Ds`` and ``dim == D``.

``generator.safetensors`` (only with a generator that has weights): its state dict,
floating tensors finite; shapes are checked when the generator loads it.

Every tensor is read with safetensors (no pickle). A violation is a one-line
``BundleError`` naming the bundle, the member and the field.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from torch import Tensor

from cdr.errors import BundleError

FORMAT = "cdr-bundle/1"
META = "meta.json"
TENSORS = "tensors.safetensors"
GENERATOR = "generator.safetensors"

#: Largest uncompressed size accepted per member (declared sizes are checked before reading).
MEMBER_LIMITS: dict[str, int] = {
    META: 1 << 30,
    TENSORS: 1 << 36,
    GENERATOR: 1 << 34,
}

FLOAT_TENSORS = ("source_users", "target_users", "source_items", "target_items", "fold_in")
INDEX_TENSORS = ("seen_user", "seen_item")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

# What reading a damaged zip archive can raise besides BadZipFile (deflate errors, short
# reads, bad header fields, undecodable names, unsupported methods).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    struct.error,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    KeyError,
)
# What safetensors (or building tensors from its header) can raise on a bad payload.
_SAFETENSORS_ERRORS = (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, shortened: safe to embed in a CdrError."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen(eq=False)
class BundleContents:
    """A bundle that passed every check: ids, spec, config and float32/int64 tensors."""

    user_ids: tuple[str, ...]
    source_item_ids: tuple[str, ...]
    target_item_ids: tuple[str, ...]
    generator_spec: dict[str, Any] | None
    config: dict[str, Any] | None
    tensors: dict[str, Tensor]
    generator_state: dict[str, Tensor]


def read_members(path: Path) -> dict[str, bytes]:
    """The members of the bundle zip at ``path``, in memory, after the archive-level checks
    (names, repeats, sizes, methods); which members are required is checked on parsing."""
    if not path.exists():
        raise BundleError(f"{path}: no such bundle", hint="write one with `cdr export RUN --out`")
    if path.is_dir():
        raise BundleError(f"{path}: is a directory, not a bundle file")
    if not path.is_file():
        raise BundleError(f"{path}: not a regular file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            for name in names:
                if name not in MEMBER_LIMITS:
                    raise BundleError(f"{path}: unexpected member {name!r} (not a cdr bundle)")
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise BundleError(f"{path}: member {dupes[0]!r} appears more than once")
            members = {}
            for info in infos:
                members[info.filename] = _read_member(path, zf, info)
            return members
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({one_line(exc)})") from exc
    except _ZIP_ERRORS as exc:
        raise BundleError(f"{path}: not a cdr bundle (damaged zip: {one_line(exc)})") from exc


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    name, limit = info.filename, MEMBER_LIMITS[info.filename]
    if info.flag_bits & 0x1:
        raise BundleError(f"{path}: {name}: encrypted members are not supported")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise BundleError(f"{path}: {name}: unsupported compression method {info.compress_type}")
    if info.file_size > limit:
        raise BundleError(
            f"{path}: {name}: declares {info.file_size} bytes uncompressed, over the "
            f"{limit}-byte limit (a damaged bundle or a zip bomb)"
        )
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) != info.file_size:
        raise BundleError(f"{path}: {name}: {len(data)} bytes, declared {info.file_size}")
    return data


def parse_meta(where: str, raw: bytes) -> dict[str, Any]:
    """``meta.json``'s bytes -> a JSON object whose format is FORMAT (BundleError otherwise)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise BundleError(f"{where}: {META}: key {key[:40]!r} appears more than once")
            out[key] = value
        return out

    try:
        meta = json.loads(raw.decode("utf-8"), object_pairs_hook=unique)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where}: {META}: not UTF-8 (byte {exc.start})") from exc
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{where}: {META}: not valid JSON ({one_line(exc)})") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: {META}: expected a JSON object, got {_kind(meta)}")
    fmt = meta.get("format")
    if fmt != FORMAT:
        shown = repr(fmt) if isinstance(fmt, str) else _kind(fmt)
        raise BundleError(
            f"{where}: {META}: format: unsupported bundle format {shown} (expected {FORMAT!r})",
            hint="re-export the run with this version of cdr (`cdr export RUN --out NEW`)",
        )
    return meta


def parse_tensors(where: str, member: str, raw: bytes) -> dict[str, Tensor]:
    """A safetensors payload -> its tensors (never unpickles); BundleError when damaged."""
    try:
        tensors = load_tensors(raw)
    except _SAFETENSORS_ERRORS as exc:
        raise BundleError(f"{where}: {member}: not a safetensors file ({one_line(exc)})") from exc
    return dict(tensors)


def validate(
    where: str,
    meta: Mapping[str, Any],
    tensors: Mapping[str, Tensor],
    generator_state: Mapping[str, Tensor],
) -> BundleContents:
    """Hold parsed members to the schema (module docstring); float32 / int64 tensors out."""
    user_ids = _ids(where, meta, "user_ids")
    source_item_ids = _ids(where, meta, "source_item_ids")
    target_item_ids = _ids(where, meta, "target_item_ids")
    if not target_item_ids:
        raise BundleError(f"{where}: {META}: target_item_ids: empty (nothing to recommend)")
    spec = _generator_spec(where, meta)
    config = meta.get("config")
    if not isinstance(config, dict):
        raise BundleError(f"{where}: {META}: config: expected an object, got {_kind(config)}")

    extra = sorted(set(tensors) - set(FLOAT_TENSORS) - set(INDEX_TENSORS))
    if extra:
        raise BundleError(f"{where}: {TENSORS}: unexpected tensor {extra[0]!r}")
    out: dict[str, Tensor] = {}
    for name in FLOAT_TENSORS:
        out[name] = _float_tensor(where, TENSORS, name, tensors, ndim=2)
    for name in INDEX_TENSORS:
        out[name] = _index_tensor(where, name, tensors)

    u, i_s, i_t = len(user_ids), len(source_item_ids), len(target_item_ids)
    ds, d = out["source_items"].shape[1], out["target_items"].shape[1]
    expected = {
        "source_users": (u, ds),
        "target_users": (u, d),
        "source_items": (i_s, ds),
        "target_items": (i_t, d),
        "fold_in": (ds, ds),
    }
    for name, shape in expected.items():
        if tuple(out[name].shape) != shape:
            raise BundleError(
                f"{where}: {TENSORS}: {name}: shape {list(out[name].shape)}, expected "
                f"{list(shape)} (from the id maps in {META} and the item tensors)"
            )
    if ds < 1 or d < 1:
        raise BundleError(f"{where}: {TENSORS}: zero-width vectors (Ds={ds}, D={d})")
    seen_user, seen_item = out["seen_user"], out["seen_item"]
    if seen_user.shape != seen_item.shape:
        raise BundleError(
            f"{where}: {TENSORS}: seen_user {list(seen_user.shape)} and seen_item "
            f"{list(seen_item.shape)} differ in length"
        )
    for name, index, bound in (("seen_user", seen_user, u), ("seen_item", seen_item, i_t)):
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= bound):
            raise BundleError(
                f"{where}: {TENSORS}: {name}: index out of range [0, {bound}) "
                f"(min {int(index.min())}, max {int(index.max())})"
            )
    if spec is not None and (spec["in_dim"], spec["dim"]) != (ds, d):
        raise BundleError(
            f"{where}: {META}: generator: in_dim {spec['in_dim']} / dim {spec['dim']} do not "
            f"match the tensors (Ds={ds}, D={d})"
        )
    if spec is None and generator_state:
        raise BundleError(f"{where}: {GENERATOR}: present, but {META} names no generator")
    state: dict[str, Tensor] = {}
    for name, value in generator_state.items():
        state[name] = _state_tensor(where, name, value)
    return BundleContents(
        user_ids=user_ids,
        source_item_ids=source_item_ids,
        target_item_ids=target_item_ids,
        generator_spec=spec,
        config=config,
        tensors=out,
        generator_state=state,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _ids(where: str, meta: Mapping[str, Any], key: str) -> tuple[str, ...]:
    ids = meta.get(key)
    if not isinstance(ids, list):
        raise BundleError(f"{where}: {META}: {key}: expected a list of strings, got {_kind(ids)}")
    for n, value in enumerate(ids):
        if not isinstance(value, str):
            raise BundleError(
                f"{where}: {META}: {key}[{n}]: expected a string id, got {_kind(value)}"
            )
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise BundleError(f"{where}: {META}: {key}: id {value!r} appears more than once")
        seen.add(value)
    return tuple(ids)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _generator_spec(where: str, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = meta.get("generator")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise BundleError(
            f"{where}: {META}: generator: expected null or an object, got {_kind(spec)}"
        )
    if not isinstance(spec.get("kind"), str) or not spec["kind"]:
        raise BundleError(
            f"{where}: {META}: generator.kind: expected a name, got {_kind(spec.get('kind'))}"
        )
    for key in ("dim", "in_dim"):
        if not _positive_int(spec.get(key)):
            raise BundleError(
                f"{where}: {META}: generator.{key}: expected a positive integer, "
                f"got {spec.get(key)!r}"
            )
    return {"kind": spec["kind"], "dim": spec["dim"], "in_dim": spec["in_dim"]}


def _float_tensor(
    where: str, member: str, name: str, tensors: Mapping[str, Tensor], ndim: int
) -> Tensor:
    if name not in tensors:
        raise BundleError(f"{where}: {member}: missing tensor {name!r}")
    value = tensors[name]
    if value.dtype not in FLOAT_DTYPES:
        raise BundleError(
            f"{where}: {member}: {name}: dtype {value.dtype}, expected floating point"
        )
    if value.ndim != ndim:
        raise BundleError(
            f"{where}: {member}: {name}: {value.ndim}-D {list(value.shape)}, expected {ndim}-D"
        )
    out = value.to(torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise BundleError(f"{where}: {member}: {name}: non-finite values (NaN or +-inf)")
    return out


def _index_tensor(where: str, name: str, tensors: Mapping[str, Tensor]) -> Tensor:
    if name not in tensors:
        raise BundleError(f"{where}: {TENSORS}: missing tensor {name!r}")
    value = tensors[name]
    if value.dtype not in INDEX_DTYPES:
        raise BundleError(f"{where}: {TENSORS}: {name}: dtype {value.dtype}, expected integers")
    if value.ndim != 1:
        raise BundleError(
            f"{where}: {TENSORS}: {name}: {value.ndim}-D {list(value.shape)}, expected 1-D"
        )
    return value.to(torch.long)


def _state_tensor(where: str, name: str, value: Tensor) -> Tensor:
    if value.dtype.is_complex:
        raise BundleError(f"{where}: {GENERATOR}: {name}: unsupported dtype {value.dtype}")
    if value.dtype.is_floating_point:
        if value.dtype not in FLOAT_DTYPES:
            raise BundleError(f"{where}: {GENERATOR}: {name}: unsupported dtype {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise BundleError(f"{where}: {GENERATOR}: {name}: non-finite values (NaN or +-inf)")
    return value
