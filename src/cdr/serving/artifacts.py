"""What a pipeline leaves behind for serving: final representations, id maps, the generator.

Pipelines call ``save_artifacts(run_dir, artifacts)`` once training ends; ``cdr export``
packs them (with the resolved config) into a self-contained bundle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor, nn

from cdr.data.records import Interactions
from cdr.errors import RunError
from cdr.runs import atomic_write_bytes, atomic_write_text
from cdr.serving.fold_in import fit_fold_in
from cdr.serving.schema import one_line

SERVING = "serving"


@attrs.frozen(eq=False)
class ServingArtifacts:
    """Final state of a trained cross-domain model, in the target domain's terms.

    user_ids [U] / source_item_ids [Is] / target_item_ids [It]: raw ids (index = position).
    source_users [U, Ds]: auxiliary-domain user vectors (zeros for users without history).
    target_users [U, D]: target-domain user vectors (learned, or generated for cold users).
    source_items [Is, Ds], target_items [It, D]: item representations.
    seen_user / seen_item [E]: target-domain training edges (for --exclude-seen).
    generator: maps an auxiliary vector [B, Ds] to a target vector [B, D] (None: the
    target vector of a new user is unavailable without target history).
    generator_spec: {"kind", "config", "dim", "in_dim"} to rebuild it from the registry.
    """

    user_ids: tuple[str, ...]
    source_item_ids: tuple[str, ...]
    target_item_ids: tuple[str, ...]
    source_users: Tensor
    target_users: Tensor
    source_items: Tensor
    target_items: Tensor
    seen_user: Tensor
    seen_item: Tensor
    generator: nn.Module | None = None
    generator_spec: dict[str, Any] | None = None


def _tensors(art: ServingArtifacts) -> dict[str, Tensor]:
    return {
        name: getattr(art, name).detach().cpu().contiguous()
        for name in (
            "source_users",
            "target_users",
            "source_items",
            "target_items",
            "seen_user",
            "seen_item",
        )
    }


def save_artifacts(
    run_dir: Path, art: ServingArtifacts, source_history: Interactions | None = None
) -> Path:
    """Write ``run_dir/serving/`` (tensors and generator weights as safetensors, ids as JSON).

    ``source_history``: the auxiliary-domain interactions, to fit the cold-start fold-in map
    (see ``cdr.serving.bundle``); identity when absent.
    """
    out = run_dir / SERVING
    out.mkdir(parents=True, exist_ok=True)
    tensors = _tensors(art)
    if source_history is not None and len(source_history):
        tensors["fold_in"] = fit_fold_in(
            source_history.user,
            source_history.item,
            source_history.rating,
            tensors["source_users"],
            tensors["source_items"],
        ).contiguous()
    else:
        tensors["fold_in"] = torch.eye(tensors["source_items"].shape[1])
    atomic_write_bytes(out / "tensors.safetensors", save_tensors(tensors))
    meta: dict[str, Any] = {
        "user_ids": list(art.user_ids),
        "source_item_ids": list(art.source_item_ids),
        "target_item_ids": list(art.target_item_ids),
        "generator": art.generator_spec,
    }
    if art.generator is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in art.generator.state_dict().items()}
        atomic_write_bytes(out / "generator.safetensors", save_tensors(state))
    atomic_write_text(out / "meta.json", json.dumps(meta))
    return out


def load_artifact_files(
    folder: Path,
) -> tuple[dict[str, Tensor], dict[str, Any], dict[str, Tensor]]:
    """(tensors, meta, generator state) from a ``serving/`` folder; RunError when damaged.

    Only parsed here (safetensors, JSON); ``cdr export`` holds them to the bundle schema.
    """
    if not (folder / "meta.json").is_file():
        raise RunError(
            f"{folder}: no serving artifacts (was the run finished by a pipeline that saves them?)"
        )
    tensors = _load_tensors(folder / "tensors.safetensors")
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RunError(f"{meta_path}: unreadable ({one_line(exc)})") from exc
    except (ValueError, RecursionError) as exc:
        raise RunError(f"{meta_path}: not valid JSON ({one_line(exc)})") from exc
    if not isinstance(meta, dict):
        raise RunError(f"{meta_path}: expected a JSON object")
    gen_path = folder / "generator.safetensors"
    state = _load_tensors(gen_path) if gen_path.exists() else {}
    return tensors, meta, state


def _load_tensors(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise RunError(f"{path}: missing", hint="re-run the experiment to rewrite it")
    try:
        return dict(load_tensors(path.read_bytes()))
    except OSError as exc:
        raise RunError(f"{path}: unreadable ({one_line(exc)})") from exc
    except (SafetensorError, ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise RunError(f"{path}: not a safetensors file ({one_line(exc)})") from exc
