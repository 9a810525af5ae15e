"""``catn``: CATN (Zhao et al., SIGIR 2020): aspect transfer from a user's reviews.

CATN extracts M aspects of a user from their auxiliary-domain review document and M aspects
of an item from its target-domain review document, scores every (user aspect, item aspect)
pair and weights the pairs by aspect importance; trained end to end on ratings. Its parts
(the paper's sections on aspect extraction, aspect correlation and rating prediction;
equation numbers are not checked here, so the formulas are written out), as built here:

1. Document. CATN's positions are a review document's words after a convolution
   (``C [P, F]``). Here a user's document is the sequence of feature vectors the
   framework has for their auxiliary reviews: their own auxiliary vector f^A (the user
   encoder over their review text when ``encoders.user`` is a text encoder, e.g. ``llm``
   or ``plm``) followed by the auxiliary vectors of the items they reviewed (the
   Generator interface's ``History``, most recent first); ``X [B, P, D]``, P = 1 + L.
2. Aspect extraction, per aspect m (a gated projection and an aspect attention):
   ``S_m = (X W_m + b_m) * sigmoid(X G_m + c_m)`` [B, P, k];
   ``alpha_m = softmax_p(S_m v_m)`` over the document's real positions;
   ``a_m = sum_p alpha_{m,p} S_{m,p}`` [B, k] -> user aspects ``A [B, M, k]``.
3. Item aspects. ``b_n(i) = P_n e_i`` [k]: learned projections of the item's target
   vector e_i (the item side of the frozen target space).
4. Aspect correlation. ``S_mn = a_m^T W_s b_n`` (bilinear).
5. Rating. ``r_ui = sum_{m,n} g_m h_n S_mn`` with user-aspect importance
   ``g = softmax_m(a_m^T w_g)`` and item-aspect importance ``h = softmax(eta)``.

Because 3-5 are linear in e_i, ``r_ui = <f_hat_u, e_i>`` with
``f_hat_u = sum_n h_n P_n^T W_s^T sum_m g_m a_m``: ``generate`` returns that vector, and
the configured Scorer (``dot``) reads CATN's rating off the target space, which is how the
cold-start protocol rates every generator. ``aspect_scores`` computes r_ui pair by pair.

Training: CATN learns from ratings, so ``joint_weight`` is 0 by default (stage 2 is the
rating MSE of the generated vectors, through the Scorer, on the overlapping training
users' target ratings). For ``joint_weight`` > 0 the generator loss is the MSE between
f_hat and the user's target vector. Defaults: M = 5 aspects of k = 32 dimensions (M = 5 is
our recollection of the paper's setting, not checked against its text here).

Deviations from the paper, and why:

- Positions are review *feature vectors* (one per user plus one per reviewed item), not
  words: encoders in this framework give one vector per user or item, never per token,
  and the generator sees user vectors and history item vectors only. No convolution over
  words, hence; the gated projection and aspect attention run over these positions.
  (A per-review feature matrix would need an Encoder that returns one vector per review.)
- Item aspects are linear projections of the item's target vector instead of aspects
  extracted from the item's review document; the item-aspect importance h is global and
  the correlation has no ReLU: an item-dependent gate, attention or ReLU would make the
  rating non-linear in e_i, and the protocol scores a user vector against item vectors
  with the Scorer. So the item side collapses to one linear map ``sum_n h_n P_n^T W_s^T``.
- No user, item or global rating bias: the Scorer has none (the target space's heads
  carry the offsets).
- CATN's auxiliary reviews from like-minded users are not used: the Generator interface
  gives a generator no other users' reviews (``omnimatch`` approximates them with a
  memory of training users; see there).
- CATN trains the user-side extractor on both domains' ratings; here only the target
  ratings of overlapping training users train it (the auxiliary ratings shaped the
  auxiliary space in stage 0).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.config.validators import in_range, positive
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History


@attrs.frozen
class CATNConfig(GeneratorConfig):
    """aspects: M; aspect_dim: k; joint_weight: lambda of MuSiC eq. 13 (0 = ratings only,
    as CATN)."""

    kind: str = "catn"
    aspects: int = attrs.field(default=5, validator=positive)
    aspect_dim: int = attrs.field(default=32, validator=positive)
    joint_weight: float = attrs.field(default=0.0, validator=in_range(0.0, 1.0))


class CATNGenerator(GeneratorBase):
    """User aspects from the review-feature document; item aspects by projection."""

    def __init__(
        self, in_dim: int, dim: int, aspects: int, aspect_dim: int, joint_weight: float = 0.0
    ) -> None:
        # servable=False: a served cold-start user has a fold-in vector, not a history
        super().__init__(
            GeneratorTraits(uses_history=True, joint_weight=joint_weight, servable=False)
        )
        m, k = aspects, aspect_dim

        def weight(*shape: int, fan_in: int) -> nn.Parameter:
            bound = fan_in**-0.5
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        # 2. aspect extraction: W_m, b_m (projection), G_m, c_m (gate), v_m (aspect query)
        self.project = weight(m, in_dim, k, fan_in=in_dim)
        self.project_bias = nn.Parameter(torch.zeros(m, k))
        self.gate = weight(m, in_dim, k, fan_in=in_dim)
        self.gate_bias = nn.Parameter(torch.zeros(m, k))
        self.query = weight(m, k, fan_in=k)
        # 5. user-aspect importance w_g, item-aspect importance logits eta
        self.importance = weight(k, fan_in=k)
        self.item_importance = nn.Parameter(torch.zeros(m))
        # 4. correlation W_s; 3. item-aspect projections P_n [k, dim]
        self.correlation = weight(k, k, fan_in=k)
        self.item_project = weight(m, k, dim, fan_in=dim)

    def document(self, condition: Tensor, history: History | None) -> tuple[Tensor, Tensor]:
        """X [B, P, D] (the user's vector, then their history items) and mask [B, P]."""
        own = condition.unsqueeze(1)
        mask = torch.ones(condition.shape[0], 1, dtype=torch.bool, device=condition.device)
        if history is None:
            return own, mask
        return torch.cat([own, history.items], 1), torch.cat([mask, history.mask], 1)

    def user_aspects(self, condition: Tensor, history: History | None = None) -> Tensor:
        """A [B, M, k]: gated projections attended by each aspect's query."""
        x, mask = self.document(condition, history)  # [B, P, D], [B, P]
        value = torch.einsum("bpd,mdk->bmpk", x, self.project) + self.project_bias[:, None]
        gate = torch.einsum("bpd,mdk->bmpk", x, self.gate) + self.gate_bias[:, None]
        s = value * torch.sigmoid(gate)  # [B, M, P, k]
        logits = torch.einsum("bmpk,mk->bmp", s, self.query)
        logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        attention = torch.softmax(logits, dim=-1)  # position 0 is always real
        return torch.einsum("bmp,bmpk->bmk", attention, s)

    def user_importance(self, aspects: Tensor) -> Tensor:
        """g [B, M] = softmax_m(a_m^T w_g)."""
        return torch.softmax(aspects @ self.importance, dim=-1)

    def transfer(self) -> Tensor:
        """sum_n h_n P_n [k, dim]: the item side of the rating, one linear map."""
        h = torch.softmax(self.item_importance, dim=0)
        return torch.einsum("n,nkd->kd", h, self.item_project)

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        """f_hat [B, dim] with <f_hat, e_i> = sum_{m,n} g_m h_n a_m^T W_s P_n e_i."""
        aspects = self.user_aspects(condition, history)  # [B, M, k]
        pooled = torch.einsum("bm,bmk->bk", self.user_importance(aspects), aspects)
        return (pooled @ self.correlation) @ self.transfer()

    def aspect_scores(
        self, condition: Tensor, items: Tensor, history: History | None = None
    ) -> Tensor:
        """r [B] for aligned pairs (user b, item vector items[b] [B, dim]), pair by pair:
        S_mn = a_m^T W_s P_n e_i, weighted by g_m h_n (the un-collapsed rating)."""
        aspects = self.user_aspects(condition, history)  # [B, M, k]
        item_aspects = torch.einsum("nkd,bd->bnk", self.item_project, items)  # [B, M, k]
        s = torch.einsum("bmk,kl,bnl->bmn", aspects, self.correlation, item_aspects)
        g = self.user_importance(aspects)  # [B, M]
        h = torch.softmax(self.item_importance, dim=0)  # [M]
        return torch.einsum("bm,n,bmn->b", g, h, s)

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        if condition is None:  # CATN has nothing to learn from a user without reviews
            return torch.zeros((), device=target.device)
        return F.mse_loss(self.generate(condition, history=history), target)


def _build(config: CATNConfig, ctx: BuildContext) -> CATNGenerator:
    generator = CATNGenerator(
        ctx.in_dim, ctx.dim, config.aspects, config.aspect_dim, config.joint_weight
    )
    return generator.to(ctx.device)


component = Component(
    "catn",
    "generators",
    CATNConfig,
    _build,
    "CATN: aspects of a user's auxiliary reviews, transferred to target items",
)
