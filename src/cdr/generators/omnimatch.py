"""``omnimatch``: OmniMatch (Dai et al., EDBT 2025): auxiliary reviews for cold-start users,
domain-adversarial and contrastive training.

OmniMatch gives a cold-start user a target-domain document they never wrote: target-domain
reviews of *like-minded* users (users who gave the same rating to the same auxiliary
item). Its network reads the user's auxiliary document s and their target document a
(training users: their own target reviews; cold-start users: the auxiliary one) through
a shared extractor E_c (domain-invariant "common" features) and per-domain extractors
E_S, E_T (domain-specific features), and predicts a rating from the target-side features
and the item's. Three losses, weighted 1, 0.25 (+0.25) and 0.1 in the authors' code:

- rating MSE;
- domain adversarial (DANN, Ganin & Lempitsky 2015): a domain classifier on E_c features
  of auxiliary and target documents behind a gradient-reversal layer (GRL), so E_c learns
  features the classifier cannot tell apart, plus a classifier that keeps E_S / E_T
  domain-specific; the GRL coefficient follows DANN's schedule
  ``2 / (1 + exp(-10 p)) - 1`` with p the training progress;
- supervised contrastive (SupCon, Khosla et al. 2020) between each sample's projected
  auxiliary view and projected target view (temperature 0.07).

Here (the paper's equation numbers are not checked, so the formulas are written out):

- s = f^A, the user's auxiliary vector (from their auxiliary reviews when
  ``encoders.user`` is a text encoder, e.g. ``llm`` or ``plm``); u^T, a training user's
  target vector (from their target reviews, by the same encoder);
- like-minded users: a memory of the overlapping training users seen in training, their
  s (key) and u^T (value); a user's auxiliary target document is
  ``a = mean of the values of the k keys most similar (cosine) to s``, never the user's
  own entry (keys equal to s are skipped); k = ``neighbours`` = 10 (the authors' document
  takes one like-minded user per auxiliary item the user rated);
- ``f_hat = W_o relu(concat(E_c(a), E_T(a), E_c(s))) + b_o`` [dim]: the Scorer's
  ``<f_hat, e_i>`` plays the part of OmniMatch's rating layer (see the deviations for
  E_c(s));
- generator loss: ``0.25 (L_dom + L_spec) + 0.1 L_con``; L_dom: cross-entropy of the
  domain classifier on GRL(E_c(s)) (label auxiliary) and GRL(E_c(u^T)) (label target);
  L_spec: cross-entropy of the specific classifier on E_S(s) and E_T(u^T) (no GRL);
  L_con: the contrastive loss between the views (s, u^T) of each user.
  ``joint_weight`` 0.5, so stage 2's ``0.5 L_gen + 0.5 MSE`` keeps the code's proportions.

Defaults from the authors' code: common/specific width 64, projection 128, dropout 0.4,
temperature 0.07, loss weights 0.25 / 0.1.

Deviations from the paper, and why:

- Documents are feature vectors (one per user), not words through a CNN: encoders in this
  framework give one vector per user or item.
- Like-minded users are the nearest training users by auxiliary vector, not users who gave
  the same rating to the same auxiliary item: a generator sees user vectors, not other
  users' ratings; the auxiliary vector is what the framework has that summarises them.
  The memory holds the last ``memory`` training users (first in, first out; a user seen
  again overwrites their entry; a fixed-size buffer saved with the generator); it is
  filled only by training ``loss`` calls (hence ``joint_weight`` > 0) and starts empty
  (a user without neighbours yet gets a = 0).
- Training users read the like-minded document too (``train_document = "like-minded"``),
  not their own target document (``"own"``, the authors' code), and the rating also sees
  the user's common auxiliary features E_c(s) (``source_features``; the code's rating
  layer sees the target document's features only). In this vector space a mean of other
  users' target vectors is not distributed like a user's own target vector (a map
  trained on own vectors then meets a different input at test), and without E_c(s) the
  rating rests on k other users alone. Measured on the planted set of the learning test
  (3 seeds, cold-start RMSE; global mean 1.22, item mean 1.17): code's choices ("own",
  no E_c(s), k = 2) 1.36 / 1.27 / 1.31; "own" with E_c(s) 1.22 / 1.19 / 1.07;
  "like-minded" with E_c(s) 1.09 / 1.06 / 1.04 (k = 2) and 1.08 / 1.03 / 1.05 (k = 10).
  E_c(s) is the feature DANN and the contrastive loss make domain-invariant, so reading
  it for the target rating is their purpose.
- Ratings come from the Scorer's dot product with the frozen item vectors, not from an MLP
  over concatenated user and item features, so the item side of the contrastive views is
  absent and the contrastive loss is the label-free form (each user's two views are the
  positive pair; SupCon's rating labels live on (user, item) pairs the generator never
  sees).
- The domain adversary sees the batch's overlapping users (auxiliary vector vs real target
  vector), not separate unlabelled batches of each domain's users; one specific
  classifier sees both domains' specific features (the authors' code trains one per
  domain, each on a single label).
- The GRL schedule's progress p is the number of training steps over ``grl_steps``
  (a generator does not know the run's budget).
- Adam with the trainer's learning rate instead of the authors' Adadelta (lr 0.02).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.components import BuildContext, Component, GeneratorConfig
from cdr.config.validators import in_range, non_negative, one_of, positive
from cdr.generators.base import GeneratorBase
from cdr.interfaces import GeneratorTraits, History

#: a training user's target document: like-minded users' vectors, or their own
DOCUMENTS = ("like-minded", "own")


@attrs.frozen
class OmniMatchConfig(GeneratorConfig):
    """hidden: width of E_c, E_S, E_T; projection: width of the contrastive projection;
    neighbours: k like-minded users; memory: training users remembered; temperature,
    contrastive_weight, domain_weight: the losses; dropout: on extractor inputs;
    grl_steps: steps over which the GRL coefficient rises to 1; train_document: what a
    training user's target document is (``like-minded`` or ``own``); source_features: the
    rating also reads E_c(f^A); joint_weight: lambda of MuSiC eq. 13 (> 0: the memory
    fills in the generator loss)."""

    kind: str = "omnimatch"
    hidden: int = attrs.field(default=64, validator=positive)
    projection: int = attrs.field(default=128, validator=positive)
    neighbours: int = attrs.field(default=10, validator=positive)
    memory: int = attrs.field(default=4096, validator=positive)
    temperature: float = attrs.field(default=0.07, validator=in_range(0.0, None, low_open=True))
    contrastive_weight: float = attrs.field(default=0.1, validator=non_negative)
    domain_weight: float = attrs.field(default=0.25, validator=non_negative)
    dropout: float = attrs.field(default=0.4, validator=in_range(0.0, 1.0, high_open=True))
    grl_steps: int = attrs.field(default=1000, validator=positive)
    train_document: str = attrs.field(default="like-minded", validator=one_of(DOCUMENTS))
    source_features: bool = True
    joint_weight: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0, low_open=True))


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times ``-coefficient`` backward (DANN's GRL)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.coefficient * grad, None


def reverse_gradient(x: Tensor, coefficient: float) -> Tensor:
    out: Tensor = GradientReversal.apply(x, coefficient)
    return out


def grl_coefficient(progress: float) -> float:
    """DANN's schedule: 2 / (1 + exp(-10 p)) - 1 for progress p in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def contrastive_loss(anchor: Tensor, other: Tensor, temperature: float) -> Tensor:
    """Label-free SupCon ("one" anchor view): anchors z_i [B, P], contrasts all 2B views
    but the anchor itself; the positive of anchor i is other[i]. Rows are L2-normalised."""
    z_a, z_o = F.normalize(anchor, dim=-1), F.normalize(other, dim=-1)
    batch = z_a.shape[0]
    views = torch.cat([z_a, z_o], 0)  # [2B, P]
    logits = z_a @ views.T / temperature  # [B, 2B]
    rows = torch.arange(batch, device=anchor.device)
    logits[rows, rows] = float("-inf")  # not against itself
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -log_prob[rows, rows + batch].mean()


class OmniMatchGenerator(GeneratorBase):
    """Common / specific extractors over f^A and a target document; a memory of training
    users for the like-minded documents; see the module docstring."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        config: OmniMatchConfig,
    ) -> None:
        super().__init__(GeneratorTraits(joint_weight=config.joint_weight))
        if in_dim != dim:
            # E_c reads auxiliary and target vectors alike: one width
            self.target_in: nn.Module = nn.Linear(dim, in_dim, bias=False)
        else:
            self.target_in = nn.Identity()
        h = config.hidden
        self.dropout = nn.Dropout(config.dropout)
        self.common = nn.Linear(in_dim, h)  # E_c
        self.source_specific = nn.Linear(in_dim, h)  # E_S
        self.target_specific = nn.Linear(in_dim, h)  # E_T
        self.use_source = config.source_features
        self.train_own = config.train_document == "own"
        self.out = nn.Linear((3 if config.source_features else 2) * h, dim)  # W_o, b_o
        self.project = nn.Linear(2 * h, config.projection)
        self.domain = nn.Linear(h, 2)  # behind the GRL
        self.specific = nn.Linear(h, 2)
        self.neighbours, self.temperature = config.neighbours, config.temperature
        self.contrastive_weight, self.domain_weight = (
            config.contrastive_weight,
            config.domain_weight,
        )
        self.grl_steps = config.grl_steps
        self.keys: Tensor
        self.values: Tensor
        self.filled: Tensor
        self.cursor: Tensor
        self.steps: Tensor
        self.register_buffer("keys", torch.zeros(config.memory, in_dim))
        self.register_buffer("values", torch.zeros(config.memory, dim))
        self.register_buffer("filled", torch.zeros(config.memory, dtype=torch.bool))
        self.register_buffer("cursor", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    # -- like-minded users -------------------------------------------------------------

    def matches(self, condition: Tensor) -> Tensor:
        """[B, K] True where a remembered key equals the row of ``condition`` (the user)."""
        distance = torch.cdist(
            condition.to(self.keys.dtype), self.keys, compute_mode="donot_use_mm_for_euclid_dist"
        )
        return (distance == 0) & self.filled[None, :]

    def remember(self, condition: Tensor, target: Tensor) -> None:
        """Write the batch's (f^A, u^T) pairs into the memory: a remembered user's entry
        is overwritten in place, a new user takes the next slot (first in, first out)."""
        size = self.keys.shape[0]
        condition, target = condition.detach()[-size:], target.detach()[-size:]
        found = self.matches(condition)  # [B, K]
        known = found.any(1)
        new = ~known
        order = torch.cumsum(new.long(), 0) - 1  # rank among the batch's new users
        slots = torch.where(known, found.long().argmax(1), (self.cursor + order) % size)
        # known users first, then new ones: a full memory's oldest slot goes to a new user
        for rows in (known, new):
            self.keys[slots[rows]] = condition[rows].to(self.keys.dtype)
            self.values[slots[rows]] = target[rows].to(self.values.dtype)
            self.filled[slots[rows]] = True
        self.cursor.copy_((self.cursor + new.sum()) % size)

    def auxiliary_target(self, condition: Tensor, own: bool = False) -> Tensor:
        """a [B, dim]: the mean target vector of the k remembered users most similar to
        each row of ``condition`` [B, in_dim] (cosine), never the user's own entry; with
        ``own``, a remembered user gets their own target vector instead (OmniMatch trains
        on training users' real target documents)."""
        same = self.matches(condition)  # [B, K]
        similarity = F.normalize(condition, dim=-1) @ F.normalize(self.keys, dim=-1).T
        similarity = similarity.masked_fill(same | ~self.filled[None, :], float("-inf"))
        k = min(self.neighbours, self.keys.shape[0])
        top, index = similarity.topk(k, dim=-1)  # [B, k]
        weight = torch.isfinite(top).to(self.values.dtype)  # [B, k]
        total = (weight.unsqueeze(-1) * self.values[index]).sum(1)  # [B, dim]
        liked = total / weight.sum(1, keepdim=True).clamp_min(1.0)
        if not own:
            return liked
        mine = same.to(self.values.dtype)  # [B, K]
        count = mine.sum(1, keepdim=True)
        return torch.where(count > 0, mine @ self.values / count.clamp_min(1.0), liked)

    # -- the network ----------------------------------------------------------------------

    def features(self, x: Tensor, specific: nn.Module) -> tuple[Tensor, Tensor]:
        """(E_c(x), E_specific(x)) [B, hidden] each, dropout on the input."""
        x = self.dropout(x)
        return self.common(x), specific(x)

    def vector(self, condition: Tensor, auxiliary_target: Tensor) -> Tensor:
        """f_hat [B, dim] from the target document a [B, dim] (and f^A [B, in_dim] when
        ``source_features``)."""
        common, specific = self.features(self.target_in(auxiliary_target), self.target_specific)
        parts = [common, specific]
        if self.use_source:
            parts.append(self.common(self.dropout(condition)))
        out: Tensor = self.out(torch.relu(torch.cat(parts, -1)))
        return out

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor:
        own = self.training and self.train_own
        return self.vector(condition, self.auxiliary_target(condition, own=own))

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor:
        if condition is None:  # only overlapping users have both documents
            return torch.zeros((), device=target.device)
        if self.training:
            self.remember(condition, target)
            self.steps += 1
        coefficient = grl_coefficient(min(1.0, float(self.steps) / self.grl_steps))
        source_common, source_specific = self.features(condition, self.source_specific)
        target_common, target_specific = self.features(self.target_in(target), self.target_specific)
        # domain adversarial: E_c must not tell the domains apart; E_S / E_T must
        batch = condition.shape[0]
        labels = torch.cat(
            [torch.zeros(batch, dtype=torch.long), torch.ones(batch, dtype=torch.long)]
        ).to(condition.device)
        common = reverse_gradient(torch.cat([source_common, target_common]), coefficient)
        domain = F.cross_entropy(self.domain(torch.relu(self.dropout(common))), labels)
        specific = torch.cat([source_specific, target_specific])
        spec = F.cross_entropy(self.specific(torch.relu(self.dropout(specific))), labels)
        # contrastive: each user's auxiliary view and target view
        view_source = self.project(torch.relu(torch.cat([source_common, source_specific], -1)))
        view_target = self.project(torch.relu(torch.cat([target_common, target_specific], -1)))
        con = contrastive_loss(view_source, view_target, self.temperature)
        return self.domain_weight * (domain + spec) + self.contrastive_weight * con


def _build(config: OmniMatchConfig, ctx: BuildContext) -> OmniMatchGenerator:
    return OmniMatchGenerator(ctx.in_dim, ctx.dim, config).to(ctx.device)


component = Component(
    "omnimatch",
    "generators",
    OmniMatchConfig,
    _build,
    "OmniMatch: like-minded users' target vectors, domain-adversarial + contrastive",
)
