"""``lacdr``: LACDR (Wang et al., CIKM 2021): low-dimensional alignment of two domains.

Each domain gets an autoencoder whose code is low-dimensional (``latent`` << D): the
auxiliary one (enc_A, dec_A) and the target one (enc_T, dec_T). Both reconstruct their
domain's user vectors, and on overlapping users the two codes are aligned, so that few
overlapping users suffice to tie the (small) code spaces together. A cold-start user's
target vector is decoded from their auxiliary code: ``f_hat = dec_T(enc_A(u^A))``.

Loss (the paper's reconstruction + alignment objective; its equation numbers are not
checked here, so the terms are written out), per user, averaged over the batch:

- ``||dec_A(enc_A(u^A)) - u^A||`` for users with an auxiliary vector,
- ``||dec_T(enc_T(u^T)) - u^T||`` for users with a target vector,
- ``alpha ||enc_A(u^A) - enc_T(u^T)||`` for overlapping users (both vectors),

with Euclidean norms (not squared), as in the LACDR of DiffCDR's code (Xie et al. 2024),
the code base whose baseline set (CMF, EMCDR, SSCDR, LACDR, PTUPCDR, DiffCDR) MuSiC's
tables repeat: linear, bias-free encoders and decoders, ``alpha`` = 2 and a code of 4
dimensions (for 10-dimensional embeddings); those are the defaults here (``latent`` 4,
``alpha`` 2, linear maps). ``joint_weight`` 1: LACDR trains on its own objective.

Side users (target vector only) train the target autoencoder in stage 1
(``traits.side_users``), as LACDR trains each domain's autoencoder on all of that domain's
users; overlapping training users give all three terms in stage 2.

Deviations from the paper, and why:

- The user vectors are the cold-start protocol's frozen target space (stage 0: projection
  heads fitted on ratings), not embeddings LACDR pre-trains by MF in each domain.
- Auxiliary-only users never reach a generator in this framework, so the auxiliary
  autoencoder learns from overlapping users only (the paper uses all auxiliary users).
- The batch loss is the mean over users, not the sum (a learning rate independent of the
  batch size).
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.config.validators import in_range, non_negative, positive
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History


@attrs.frozen
class LACDRConfig(GeneratorConfig):
    """latent: width of the aligned codes; alpha: weight of the alignment term;
    joint_weight: lambda of MuSiC eq. 13 in the cold-start pipeline."""

    kind: str = "lacdr"
    latent: int = attrs.field(default=4, validator=positive)
    alpha: float = attrs.field(default=2.0, validator=non_negative)
    joint_weight: float = attrs.field(default=1.0, validator=in_range(0.0, 1.0))


class LACDRGenerator(GeneratorBase):
    """Two linear, bias-free autoencoders with a ``latent``-wide code each."""

    def __init__(
        self, in_dim: int, dim: int, latent: int, alpha: float, joint_weight: float = 1.0
    ) -> None:
        super().__init__(GeneratorTraits(side_users=True, joint_weight=joint_weight))
        self.encode_source = nn.Linear(in_dim, latent, bias=False)
        self.decode_source = nn.Linear(latent, in_dim, bias=False)
        self.encode_target = nn.Linear(dim, latent, bias=False)
        self.decode_target = nn.Linear(latent, dim, bias=False)
        self.alpha = alpha

    def target_reconstruction(self, target: Tensor) -> Tensor:
        """[B] ||dec_T(enc_T(u^T)) - u^T|| per user; target [B, dim]."""
        return (self.decode_target(self.encode_target(target)) - target).norm(dim=-1)

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        if condition is None:  # a side user: the target autoencoder alone
            return self.target_reconstruction(target).mean()
        code_source = self.encode_source(condition)  # [B, latent]
        source = (self.decode_source(code_source) - condition).norm(dim=-1)  # [B]
        align = (code_source - self.encode_target(target)).norm(dim=-1)  # [B]
        return (source + self.target_reconstruction(target) + self.alpha * align).mean()

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        out: Tensor = self.decode_target(self.encode_source(condition))
        return out


def _build(config: LACDRConfig, ctx: BuildContext) -> LACDRGenerator:
    generator = LACDRGenerator(
        ctx.in_dim, ctx.dim, config.latent, config.alpha, config.joint_weight
    )
    return generator.to(ctx.device)


component = Component(
    "lacdr",
    "generators",
    LACDRConfig,
    _build,
    "LACDR: low-dimensional alignment of two domains' autoencoders",
)
