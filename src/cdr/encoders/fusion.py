"""``fusion``: the default stand-in for an MLLM, LLM text features + image features.

MuSiC encodes an item's image and text jointly with an MLLM (MiniCPM-V); no such weights
install here, so ``fusion`` encodes the text with the ``llm`` encoder and the image with the
``image`` encoder, L2-normalises each part's rows, projects each with a fixed seeded Gaussian
(Johnson-Lindenstrauss) matrix to ``text_dim`` / ``image_dim`` columns (0 keeps the part's
width) and concatenates: [rows, text_dim + image_dim]. Zero rows (no content) stay zero.
Each part is cached on its own by ``compute_features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import non_negative
from cdr.data.records import Domain
from cdr.encoders.image import ImageConfig, ImageEncoder
from cdr.encoders.llm import LlmConfig, LlmEncoder
from cdr.interfaces import Entity
from cdr.progress import Reporter
from cdr.seeding import derive_seed


@attrs.frozen
class FusionConfig(EncoderConfig):
    kind: str = "fusion"
    text: LlmConfig = attrs.field(factory=LlmConfig)
    image: ImageConfig = attrs.field(factory=ImageConfig)
    text_dim: int = attrs.field(default=256, validator=non_negative)
    image_dim: int = attrs.field(default=256, validator=non_negative)
    seed: int = attrs.field(default=0, validator=non_negative)


def random_projection(in_dim: int, out_dim: int, seed: int) -> Tensor:
    """[in_dim, out_dim] N(0, 1/out_dim) matrix: preserves norms and angles in expectation."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(in_dim, out_dim, generator=g) / out_dim**0.5


class FusionEncoder:
    def __init__(self, config: FusionConfig, device: torch.device) -> None:
        self.config = config
        self.text = LlmEncoder(config.text, device)
        self.image = ImageEncoder(config.image, device)

    @property
    def parts(self) -> Sequence[EncoderConfig]:
        return (self.config.text, self.config.image)

    @property
    def dim(self) -> int:
        c = self.config
        return (c.text_dim or self.text.dim) + (c.image_dim or self.image.dim)

    def _project(self, x: Tensor, out_dim: int, label: str) -> Tensor:
        x = torch.nn.functional.normalize(x.float(), dim=-1)  # zero rows stay zero
        if out_dim == 0:
            return x
        seed = derive_seed(self.config.seed, "fusion", label, x.shape[1])
        return x @ random_projection(x.shape[1], out_dim, seed)

    def combine(self, features: Sequence[Tensor], entity: Entity) -> Tensor:
        text, image = features
        return torch.cat(
            [
                self._project(text, self.config.text_dim, "text"),
                self._project(image, self.config.image_dim, "image"),
            ],
            dim=1,
        )

    def encode(self, domain: Domain, entity: Entity, reporter: Reporter | None = None) -> Tensor:
        parts = [
            self.text.encode(domain, entity, reporter),
            self.image.encode(domain, entity, reporter),
        ]
        return self.combine(parts, entity)


def _build(config: FusionConfig, ctx: BuildContext) -> FusionEncoder:
    return FusionEncoder(config, ctx.device)


component = Component(
    "fusion",
    "encoders",
    FusionConfig,
    _build,
    "LLM text + image features, each projected, concatenated (MLLM stand-in)",
)
