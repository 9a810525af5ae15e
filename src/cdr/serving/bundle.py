"""Model bundles (``model.cdr``): one zip with config, weights (safetensors) and id maps.

A bundle is loadable without the training data. ``Recommender`` serves it: top-K target
items for a known user, or for a cold-start user from their auxiliary-domain history.

Cold-start fold-in: a new user's auxiliary vector is the rating-weighted mean of their
history items' auxiliary representations, mapped by a linear map ``W [Ds, Ds]`` fitted at
the end of training by least squares from known users' history means to their actual auxiliary
vectors (exact for backbones whose user vector is a normalised sum of item vectors, a fitted
approximation for the others). The generator then maps it to the target domain.
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
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor

from cdr.components import BuildContext
from cdr.config import config_to_dict
from cdr.config.loading import structure_experiment
from cdr.errors import DataError, RunError
from cdr.registry import Registry
from cdr.runs import CONFIG, atomic_write_bytes
from cdr.serving.artifacts import SERVING, load_artifact_files

FORMAT = "cdr-bundle/1"


def export_bundle(run_dir: Path, out: Path, registry: Registry) -> Path:
    """Pack ``run_dir`` (its config and ``serving/`` artifacts) into ``out``, a zip."""
    folder = run_dir / SERVING
    tensors, meta, generator_state = load_artifact_files(folder)
    config_path = run_dir / CONFIG
    if not config_path.exists():
        raise RunError(f"{config_path}: missing; not a cdr run directory")
    cfg = structure_experiment(tomllib.loads(config_path.read_text()), registry)
    meta = {**meta, "format": FORMAT, "config": config_to_dict(cfg, registry)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("tensors.safetensors", save_tensors(tensors))
        if generator_state:
            zf.writestr("generator.safetensors", save_tensors(generator_state))
    atomic_write_bytes(out, buffer.getvalue())
    return out


@attrs.frozen
class Recommendation:
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


class Recommender:
    """Batched top-K serving from a bundle (dot scores over all target items)."""

    def __init__(self, tensors: dict[str, Tensor], meta: dict[str, Any], generator: Any) -> None:
        self.target_users = tensors["target_users"]  # [U, D]
        self.target_items = tensors["target_items"]  # [It, D]
        self.source_items = tensors["source_items"]  # [Is, Ds]
        self.fold_in = tensors["fold_in"]  # [Ds, Ds]
        self.generator = generator
        self.user_ids: list[str] = meta["user_ids"]
        self.target_item_ids: list[str] = meta["target_item_ids"]
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.source_item_index = {x: i for i, x in enumerate(meta["source_item_ids"])}
        num_users = len(self.user_ids)
        seen_user, seen_item = tensors["seen_user"], tensors["seen_item"]
        # CSR of seen target items per user, for --exclude-seen: [U + 1] offsets.
        order = torch.argsort(seen_user, stable=True)
        self.seen_items = seen_item[order]
        self.seen_offsets = torch.zeros(num_users + 1, dtype=torch.long)
        self.seen_offsets[1:] = torch.cumsum(torch.bincount(seen_user, minlength=num_users), 0)

    @classmethod
    def load(cls, path: Path, registry: Registry) -> Recommender:
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read("meta.json"))
                tensors = load_tensors(zf.read("tensors.safetensors"))
                names = zf.namelist()
                state = (
                    load_tensors(zf.read("generator.safetensors"))
                    if "generator.safetensors" in names
                    else {}
                )
        except FileNotFoundError as exc:
            raise RunError(f"{path}: no such bundle") from exc
        except (zipfile.BadZipFile, KeyError) as exc:
            raise RunError(f"{path}: not a cdr bundle ({exc})") from exc
        if meta.get("format") != FORMAT:
            raise RunError(f"{path}: unsupported bundle format {meta.get('format')!r}")
        generator = None
        spec = meta.get("generator")
        if spec:
            cfg = structure_experiment(meta["config"], registry)
            component = registry.get("generators", spec["kind"])
            generator = component.build(
                cfg.generator, BuildContext(dim=spec["dim"], in_dim=spec["in_dim"])
            )
            generator.load_state_dict(state)  # empty for parameter-free generators
            generator.eval()
        return cls(tensors, meta, generator)

    def _top_k(self, users: Tensor, k: int, exclude: Tensor | None) -> tuple[Tensor, Tensor]:
        """users [B, D] -> (scores [B, k], item indices [B, k]); exclude: [B, It] bool."""
        scores = users @ self.target_items.T  # [B, It]
        if exclude is not None:
            scores = scores.masked_fill(exclude, float("-inf"))
        k = min(k, scores.shape[1])
        return torch.topk(scores, k, dim=1)

    def recommend_known(
        self, user_ids: Sequence[str], k: int = 20, exclude_seen: bool = False
    ) -> list[Recommendation]:
        """Top-K for known users, scored in one batch."""
        missing = [u for u in user_ids if u not in self.user_index]
        if missing:
            raise DataError(
                f"unknown user id(s) {', '.join(missing[:5])}; pass --history for a cold-start user"
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
        scores, items = self._top_k(self.target_users[index], k, exclude)
        return [
            self._record(u, s, i, cold=False)
            for u, s, i in zip(user_ids, scores, items, strict=True)
        ]

    def recommend_cold(
        self, user: str, history: Sequence[tuple[str, float]], k: int = 20, seed: int = 0
    ) -> Recommendation:
        """Top-K for a cold-start user from their auxiliary-domain history [(item id, rating)]."""
        if self.generator is None:
            raise DataError("this model has no generator: it cannot serve cold-start users")
        unknown = [item for item, _ in history if item not in self.source_item_index]
        if unknown or not history:
            detail = (
                f"unknown auxiliary item id(s) {', '.join(unknown[:5])}"
                if unknown
                else "empty history"
            )
            raise DataError(f"history of {user!r}: {detail}")
        item = torch.tensor([self.source_item_index[i] for i, _ in history])
        weight = torch.tensor([float(r) for _, r in history])
        mean = (self.source_items[item] * weight[:, None]).sum(0) / weight.sum().clamp_min(1e-12)
        source_vector = (mean @ self.fold_in)[None]  # [1, Ds]
        with torch.inference_mode():
            target_vector = self.generator.generate(source_vector, seed=seed)  # [1, D]
        scores, items = self._top_k(target_vector, k, None)
        return self._record(user, scores[0], items[0], cold=True)

    def _record(self, user: str, scores: Tensor, items: Tensor, cold: bool) -> Recommendation:
        return Recommendation(
            user,
            tuple(self.target_item_ids[i] for i in items.tolist()),
            tuple(float(s) for s in scores.tolist()),
            cold,
        )
