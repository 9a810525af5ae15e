"""Model bundles (``model.cdr``): one zip with config, weights (safetensors) and id maps.

A bundle is loadable without the training data. ``Recommender`` serves it: top-K target
items for a known user, or for a cold-start user from their auxiliary-domain history.

Cold-start fold-in: a new user's auxiliary vector is the rating-weighted mean of their
history items' auxiliary representations, mapped by a linear map ``W [Ds, Ds]`` fitted at
the end of training by least squares from known users' history means to their actual auxiliary
vectors (exact for backbones whose user vector is a normalised sum of item vectors, a fitted
approximation for the others). The generator then maps it to the target domain.

What a bundle must contain, and how it is checked before use: ``cdr.serving.schema``; the
accepted shapes of a cold-start history: ``cdr.serving.history``. Output is strict JSON:
scores are finite, and with ``exclude_seen`` a user gets at most as many items as remain.
"""

from __future__ import annotations

import io
import json
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors.torch import save as save_tensors
from torch import Tensor

from cdr.components import BuildContext
from cdr.config import config_to_dict
from cdr.config.loading import structure_experiment
from cdr.errors import BundleError, CdrError, InputError, RunError
from cdr.registry import Registry
from cdr.runs import CONFIG, atomic_write_bytes
from cdr.serving.artifacts import SERVING, load_artifact_files
from cdr.serving.history import History, show
from cdr.serving.schema import (
    FORMAT,
    GENERATOR,
    META,
    TENSORS,
    BundleContents,
    one_line,
    parse_meta,
    parse_tensors,
    read_members,
    validate,
)

__all__ = ["FORMAT", "Recommendation", "Recommender", "export_bundle"]

# What building a generator from an (untrusted) config or loading its state can raise.
_BUILD_ERRORS = (ValueError, TypeError, RuntimeError, ArithmeticError, IndexError, KeyError)


def export_bundle(run_dir: Path, out: Path, registry: Registry, *, overwrite: bool = False) -> Path:
    """Pack ``run_dir`` (its config and ``serving/`` artifacts) into ``out``, a zip.

    The bundle is checked against the schema (``cdr.serving.schema``) before it is written,
    atomically; an existing ``out`` is refused unless ``overwrite`` (never a directory).
    """
    if out.is_dir():
        raise BundleError(
            f"{out}: is a directory; --out is the bundle file to write",
            hint=f"pass a file path, e.g. --out {out / 'model.cdr'}",
        )
    if not overwrite and (out.exists() or out.is_symlink()):
        raise BundleError(
            f"{out}: already exists; refusing to overwrite it",
            hint="pass a new --out path, or delete the old bundle first",
        )
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    folder = run_dir / SERVING
    tensors, meta, generator_state = load_artifact_files(folder)
    config_path = run_dir / CONFIG
    if not config_path.is_file():
        raise RunError(f"{config_path}: missing; not a cdr run directory")
    try:
        config_data = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RunError(f"{config_path}: unreadable ({one_line(exc)})") from exc
    cfg = structure_experiment(config_data, registry)
    meta = {**meta, "format": FORMAT, "config": config_to_dict(cfg, registry)}
    try:
        meta_bytes = json.dumps(meta, allow_nan=False).encode()
    except ValueError as exc:
        raise RunError(f"{config_path}: a non-finite number ({one_line(exc)})") from exc
    members = {META: meta_bytes, TENSORS: save_tensors(tensors)}
    if generator_state:
        members[GENERATOR] = save_tensors(generator_state)
    try:
        Recommender.from_members(members, registry, name=str(folder))
    except BundleError as exc:
        raise RunError(
            f"{run_dir}: its serving artifacts do not make a valid bundle: {exc}",
            hint="re-run the experiment to rewrite them",
        ) from exc
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    try:
        atomic_write_bytes(out, buffer.getvalue())
    except OSError as exc:
        raise BundleError(f"{out}: cannot write the bundle ({one_line(exc)})") from exc
    return out


@attrs.frozen
class Recommendation:
    """Top items for one user, best first; scores are finite (checked on construction)."""

    user: str
    items: tuple[str, ...]
    scores: tuple[float, ...]
    cold_start: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "cold_start": self.cold_start,
            "items": [
                {"item": i, "score": round(s, 6)}
                for i, s in zip(self.items, self.scores, strict=True)
            ],
        }


def dumps(records: Sequence[Recommendation]) -> str:
    """Records as strict JSON (``allow_nan=False``: NaN or infinity is a bug, not output)."""
    return json.dumps([r.to_json() for r in records], indent=2, allow_nan=False)


class Recommender:
    """Batched top-K serving from a bundle (dot scores over all target items).

    Build it with ``load`` (a bundle file) or ``from_members`` (its members in memory): both
    hold the bundle to the schema of ``cdr.serving.schema`` first.
    """

    def __init__(
        self, contents: BundleContents, generator: Any = None, name: str = "bundle"
    ) -> None:
        tensors = contents.tensors
        self.name = name
        self.target_users = tensors["target_users"]  # [U, D]
        self.target_items = tensors["target_items"]  # [It, D]
        self.source_items = tensors["source_items"]  # [Is, Ds]
        self.fold_in = tensors["fold_in"]  # [Ds, Ds]
        self.generator = generator
        self.user_ids: list[str] = list(contents.user_ids)
        self.target_item_ids: list[str] = list(contents.target_item_ids)
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.source_item_index = {x: i for i, x in enumerate(contents.source_item_ids)}
        num_users = len(self.user_ids)
        seen_user, seen_item = tensors["seen_user"], tensors["seen_item"]
        # CSR of seen target items per user, for --exclude-seen: [U + 1] offsets.
        order = torch.argsort(seen_user, stable=True)
        self.seen_items = seen_item[order]
        self.seen_offsets = torch.zeros(num_users + 1, dtype=torch.long)
        self.seen_offsets[1:] = torch.cumsum(torch.bincount(seen_user, minlength=num_users), 0)

    @classmethod
    def load(cls, path: Path, registry: Registry) -> Recommender:
        """Read, check and serve the bundle at ``path`` (BundleError when it is not valid)."""
        return cls.from_members(read_members(path), registry, name=str(path))

    @classmethod
    def from_members(
        cls, members: dict[str, bytes], registry: Registry, name: str = "bundle"
    ) -> Recommender:
        """Serve a bundle given as its members' bytes; ``name`` prefixes every error."""
        for required in (META, TENSORS):
            if required not in members:
                raise BundleError(f"{name}: missing member {required!r}")
        meta = parse_meta(name, members[META])
        tensors = parse_tensors(name, TENSORS, members[TENSORS])
        state = parse_tensors(name, GENERATOR, members[GENERATOR]) if GENERATOR in members else {}
        contents = validate(name, meta, tensors, state)
        return cls(contents, _build_generator(name, contents, registry), name)

    def _top_k(
        self, users: Tensor, k: int, exclude: Tensor | None, who: Sequence[str]
    ) -> list[tuple[Tensor, Tensor]]:
        """users [B, D] -> per user (scores [<=k], item indices [<=k]), best first.

        exclude [B, It] bool: items never returned; each user gets at most as many items as
        remain, so an excluded (-inf) item is never padded in.
        """
        _check_k(k)
        scores = users @ self.target_items.T  # [B, It]
        num_items = scores.shape[1]
        remaining = [num_items] * scores.shape[0]
        if exclude is not None:
            scores = scores.masked_fill(exclude, float("-inf"))
            remaining = (num_items - exclude.sum(1)).tolist()
        top_scores, top_items = torch.topk(scores, min(k, num_items), dim=1)
        out = []
        for row, (user, left) in enumerate(zip(who, remaining, strict=True)):
            n = min(k, int(left))
            row_scores = top_scores[row, :n]
            if not bool(torch.isfinite(row_scores).all()):
                raise BundleError(
                    f"{self.name}: non-finite scores for user {show(user)} "
                    "(the bundle's vectors overflow float32)"
                )
            out.append((row_scores, top_items[row, :n]))
        return out

    def recommend_known(
        self, user_ids: Sequence[str], k: int = 20, exclude_seen: bool = False
    ) -> list[Recommendation]:
        """Top-K for known users, scored in one batch; with ``exclude_seen``, fewer than k
        items for a user with fewer than k unseen items."""
        _check_k(k)
        missing = [u for u in user_ids if u not in self.user_index]
        if missing:
            raise InputError(
                f"{self.name}: unknown user id(s) {', '.join(show(u) for u in missing[:5])}",
                hint="pass --history for a cold-start user",
            )
        index = torch.tensor([self.user_index[u] for u in user_ids], dtype=torch.long)
        exclude = None
        if exclude_seen:
            exclude = torch.zeros(len(index), self.target_items.shape[0], dtype=torch.bool)
            starts, ends = self.seen_offsets[index], self.seen_offsets[index + 1]
            counts = ends - starts
            rows = torch.repeat_interleave(torch.arange(len(index)), counts)
            within = torch.arange(int(counts.sum())) - torch.repeat_interleave(
                torch.cumsum(counts, 0) - counts, counts
            )
            exclude[rows, self.seen_items[starts[rows] + within]] = True
        ranked = self._top_k(self.target_users[index], k, exclude, user_ids)
        return [
            self._record(u, s, i, cold=False) for u, (s, i) in zip(user_ids, ranked, strict=True)
        ]

    def recommend_cold(
        self,
        user: str,
        history: History | Sequence[tuple[str, float]],
        k: int = 20,
        seed: int = 0,
    ) -> Recommendation:
        """Top-K for a cold-start user from their auxiliary-domain history.

        ``history``: a checked ``History`` (``cdr.serving.history``) or [(item id, rating)]
        pairs, checked here the same way. Item ids the bundle does not know are an
        InputError naming the first such entry (and how many there are).
        """
        _check_k(k)
        if not isinstance(history, History):
            history = History.from_pairs(f"history of {show(user)}", history)
        if self.generator is None:
            raise InputError(
                f"{self.name}: this model has no generator: it cannot serve cold-start users"
            )
        unknown = [n for n, item in enumerate(history.items) if item not in self.source_item_index]
        if unknown:
            first = unknown[0]
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InputError(
                f"{history.source}: {history.labels[first]}: unknown auxiliary item id "
                f"{show(history.items[first])}{more}",
                hint=f"{self.name} knows {len(self.source_item_index)} auxiliary items",
            )
        item = torch.tensor([self.source_item_index[i] for i in history.items])
        weight = torch.tensor(history.ratings, dtype=torch.float64)
        weight = weight / weight.sum()  # ratings are positive: a convex combination
        mean = (self.source_items[item].double() * weight[:, None]).sum(0).float()
        source_vector = (mean @ self.fold_in)[None]  # [1, Ds]
        with torch.inference_mode():
            target_vector = self.generator.generate(source_vector, seed=seed)  # [1, D]
        if tuple(target_vector.shape) != (1, self.target_items.shape[1]):
            raise BundleError(
                f"{self.name}: the generator returned shape {list(target_vector.shape)}, "
                f"expected [1, {self.target_items.shape[1]}]"
            )
        [(scores, items)] = self._top_k(target_vector.float(), k, None, [user])
        return self._record(user, scores, items, cold=True)

    def _record(self, user: str, scores: Tensor, items: Tensor, cold: bool) -> Recommendation:
        return Recommendation(
            user,
            tuple(self.target_item_ids[i] for i in items.tolist()),
            tuple(float(s) for s in scores.tolist()),
            cold,
        )


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")


def _build_generator(name: str, contents: BundleContents, registry: Registry) -> Any:
    """The bundle's generator, rebuilt from its config and loaded with its state (or None)."""
    spec = contents.generator_spec
    if spec is None:
        return None
    try:
        cfg = structure_experiment(contents.config or {}, registry)
        component = registry.get("generators", spec["kind"])
        generator = component.build(
            cfg.generator, BuildContext(dim=spec["dim"], in_dim=spec["in_dim"])
        )
    except CdrError as exc:
        raise BundleError(
            f"{name}: {META}: cannot rebuild the generator ({one_line(exc)})", hint=exc.hint
        ) from exc
    except _BUILD_ERRORS as exc:
        raise BundleError(
            f"{name}: {META}: cannot rebuild the generator ({one_line(exc)})"
        ) from exc
    if not hasattr(generator, "generate") or not hasattr(generator, "load_state_dict"):
        raise BundleError(f"{name}: {META}: generator {spec['kind']!r} cannot serve")
    try:
        generator.load_state_dict(contents.generator_state)  # empty: parameter-free
    except _BUILD_ERRORS as exc:
        raise BundleError(
            f"{name}: {GENERATOR}: does not fit generator {spec['kind']!r} ({one_line(exc)})"
        ) from exc
    generator.eval()
    return generator
