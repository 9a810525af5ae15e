"""PPA (Zhang, Zhang, Xu, Chen, Li, Guo, Yin, CIKM 2024, "Preference Prototype-Aware
Learning for Universal Cross-Domain Recommendation"): UniCDR's domain-specific / shared
user framework with a mix-encoder and a preference prototype-aware decoder (a MICRec
cross-domain baseline).

Identification: MICRec's baseline list cites "PPA [38]", and its reference [38] is this
paper (Yuxi Zhang et al., CIKM 2024, pp. 3290-3299). Its text is not available here; the
method is read from its abstract (a mix-encoder learning general representations of the
interacted items across domains; a decoder matching users to learnable preference
prototypes, which also keeps out disturbances from the source domain's item features)
and from the authors' code (github.com/Canyizl/PPA-for-CDR: ``model/UniCDR.py``,
``model/transformer_encoder.py``, ``model/transformer_decoder.py``, ``train_rec.py``,
built on UniCDR's code), the ``dual-user-intra`` path (two domains sharing users), which
this module follows; no code is copied. Everything not listed here is UniCDR's
(:mod:`cdr.backbones.unicdr`): ID embeddings, interaction and domain masking, the shared
users tied across the two domains by ``pair``, dropout, BCE with sampled negatives, the
score ``<s_u + h_u, v_i>``.

- Mix-encoder: for two domains the authors' encoder pools a context by its mean, with no
  projection (its "mix network", a hypernetwork over EASE item-similarity weights, runs
  only in their multi-domain scenario); so ``s_u = lambda_a u^Z + (1 - lambda_a)
  mean(v_i)`` and likewise ``h_u`` from ``u^S``.
- Prototype-aware decoder (one per domain): ``2 P`` prototypes ``p_j`` [2P, D] (P = 24 per
  class; class 1 = a user's own (specific, shared) pair, class 0 = a shuffled pair), the
  squared distances ``d_j = ||s - p_j||^2`` of a specific representation ``s``, ProtoPNet
  similarities ``log((d_j + 1) / (d_j + eps))`` and a last layer [2P -> 2] initialised to
  +1 from a prototype to its class and -0.5 to the other.
- Prototype loss, for the batch's own pairs ``(s_u, class 1)`` and shuffled pairs
  ``(s_u', class 0)`` (``u'``: the batch rolled by a random offset):
  ``L_p = CE(logits, class) + (0.1 cluster + 0.05 separation + 0.001 diversity) / B`` with
  cluster = mean_b min over the class's prototypes of ``d``, separation = -mean_b min over
  the other class's prototypes, diversity = sum over classes and prototype pairs of
  ``max(0, cos(p_j, p_k) - 0.3)``.
- Prototype critic: the class's prototype nearest to ``s`` is scored against ``h_u`` by a
  bilinear layer, BCE against the class (UniCDR's discriminator, with the prototype in
  place of ``s``).
- Objective: ``lambda L_rec + (1 - lambda) L_critic + lambda_pp L_p`` summed over the two
  pairs, with the authors' defaults lambda = 1 (so the critic's weight is 0 and it is not
  computed) and lambda_pp = 1; the other defaults are UniCDR's (lambda_a 0.5, mask rate
  0.1, maxlen 10, 10 negatives, dropout 0.3, N(0, 1) embeddings; trainer: Adam lr 1e-3,
  weight decay 1e-5, batch 1024, dim 128). The prototypes shape the specific
  representations through L_p; they do not enter the score (as in the authors' code).

Compared against the authors' code (their ``UniCDR`` class with the ``Transformer``
aggregator and prototype decoder, their trainer's loss with ``lambda_pp``) on the same
inductive split and budget as UniCDR's comparison (synthetic, 1000 users, 300 + 300
items; 30 epochs, batch 256, dim 32, lr 0.01; 3 seeds): target NDCG@20 0.112 +- 0.003
here vs 0.106 +- 0.004 theirs, source 0.097 vs 0.102, validation 0.128 +- 0.012 vs
0.133 +- 0.002 (popularity: 0.129 target). At the authors' lr 1e-3 both stay near 0.026
in that budget (N(0, 1) rows).

Deviations, with reasons (UniCDR's inductive handling applies unchanged: unseen users and
items take the mean ID row at inference, unseen users are represented from their revealed
items):

- The authors compute the prototype cross-entropy with all-ones (own pairs) and all-zeros
  (shuffled pairs) soft targets; over a batch that equals, value for value, the class-label
  cross-entropy used here (``-log p_0 - log p_1`` summed over the batch either way, since
  the shuffled batch is a permutation of the same rows), which is what the class labels of
  the decoder mean.
- Each domain's loss uses its own decoder's prototypes for all terms (the authors take the
  class map and the diversity term from domain 0's decoder in both domains).
- Squared distances are clamped at 0 against round-off before the log (the expansion
  ``|s|^2 + |p|^2 - 2 s.p`` can dip below 0, where the similarity is undefined).
- The multi-domain mix network (EASE weights, a dense I x I inverse) is not implemented:
  the MICRec setting has two domains, where the authors' code does not use it.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.unicdr import UniCDRBackbone, UniCDRConfig, seeded_bilinear
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, positive
from cdr.seeding import derive_seed

#: decoder classes: 0 = a shuffled (specific, shared) pair, 1 = a user's own pair
CLASSES = 2


@attrs.frozen
class PPAConfig(BackboneConfig):
    """num_prototypes: P, prototypes per class; lambda_pp: weight of the prototype loss;
    cluster_weight / separation_weight / diversity_weight / diversity_margin: its terms
    (0.1, 0.05, 0.001, 0.3); epsilon: of the prototype similarity; lambda_a, lambda_loss,
    mask_rate, max_context, num_negatives, dropout, init_std: as UniCDR's (lambda_loss = 1:
    the authors' default, no critic term)."""

    kind: str = "ppa"
    num_prototypes: int = attrs.field(default=24, validator=in_range(1, 100_000))
    lambda_pp: float = attrs.field(default=1.0, validator=non_negative)
    cluster_weight: float = attrs.field(default=0.1, validator=non_negative)
    separation_weight: float = attrs.field(default=0.05, validator=non_negative)
    diversity_weight: float = attrs.field(default=0.001, validator=non_negative)
    diversity_margin: float = attrs.field(default=0.3, validator=in_range(-1.0, 1.0))
    epsilon: float = attrs.field(default=1e-4, validator=positive)
    lambda_a: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0))
    lambda_loss: float = attrs.field(default=1.0, validator=in_range(0.0, 1.0))
    mask_rate: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))
    max_context: int = attrs.field(default=10, validator=positive)
    num_negatives: int = attrs.field(default=10, validator=in_range(1, 100_000))
    dropout: float = attrs.field(default=0.3, validator=in_range(0.0, 1.0, high_open=True))
    init_std: float = attrs.field(default=1.0, validator=positive)

    def unicdr(self) -> UniCDRConfig:
        """The UniCDR part of the model (mean pooling; the projection is left out by PPA)."""
        return UniCDRConfig(
            aggregator="mean",
            lambda_a=self.lambda_a,
            lambda_loss=self.lambda_loss,
            mask_rate=self.mask_rate,
            max_context=self.max_context,
            num_negatives=self.num_negatives,
            dropout=self.dropout,
            init_std=self.init_std,
        )


class PrototypeDecoder(nn.Module):
    """The preference prototype-aware decoder: prototypes [2P, D] (rows ``c P .. (c+1) P``
    belong to class c), the last layer [2P -> 2], the prototype critic (bilinear)."""

    class_map: Tensor  # [2P, 2] one-hot class of each prototype

    def __init__(self, dim: int, per_class: int, epsilon: float, gen: torch.Generator) -> None:
        super().__init__()
        self.per_class, self.epsilon = per_class, epsilon
        count = CLASSES * per_class
        self.prototypes = nn.Parameter(torch.randn(count, dim, generator=gen))
        class_map = F.one_hot(torch.arange(count) // per_class, CLASSES).float()  # [2P, 2]
        self.register_buffer("class_map", class_map, persistent=False)
        self.last_layer = nn.Linear(count, CLASSES, bias=False)
        with torch.no_grad():  # +1 to the own class, -0.5 to the other (ProtoPNet)
            self.last_layer.weight.copy_(class_map.T - 0.5 * (1.0 - class_map.T))
        self.pair_critic = seeded_bilinear(dim, gen)

    def distances(self, x: Tensor) -> Tensor:
        """``[B, 2P]`` squared Euclidean distances of ``x`` [B, D] to the prototypes."""
        p = self.prototypes
        cross = x @ p.T  # [B, 2P]
        squared = x.pow(2).sum(1, keepdim=True) + p.pow(2).sum(1)[None, :] - 2.0 * cross
        return squared.clamp(min=0.0)

    def logits(self, distances: Tensor) -> Tensor:
        """``[B, 2]`` class logits from the ProtoPNet similarities of ``distances`` [B, 2P]."""
        similarity = torch.log((distances + 1.0) / (distances + self.epsilon))
        out: Tensor = self.last_layer(similarity)
        return out

    def of_class(self, distances: Tensor, label: int) -> tuple[Tensor, Tensor]:
        """Distances [B, P] to class ``label``'s prototypes and [B, P] to the others'."""
        own = slice(label * self.per_class, (label + 1) * self.per_class)
        mask = torch.zeros(distances.shape[1], dtype=torch.bool, device=distances.device)
        mask[own] = True
        return distances[:, mask], distances[:, ~mask]

    def nearest(self, distances: Tensor, label: int) -> Tensor:
        """``[B, D]``: for each row, class ``label``'s prototype nearest to it."""
        own, _ = self.of_class(distances, label)
        index = own.argmin(1) + label * self.per_class  # [B]
        return self.prototypes[index]

    def diversity(self, margin: float) -> Tensor:
        """``sum_c sum_(j != k in c) max(0, cos(p_j, p_k) - margin)``."""
        p = F.normalize(self.prototypes, dim=1).view(CLASSES, self.per_class, -1)  # [2, P, D]
        cos = p @ p.transpose(1, 2)  # [2, P, P]
        eye = torch.eye(self.per_class, device=cos.device)
        return F.relu(cos - eye - margin).sum()


class PPABackbone(UniCDRBackbone):
    """UniCDR's backbone with PPA's mix-encoder (mean pooling, no projection) and its
    prototype decoder in place of the bilinear discriminator (see the module docstring)."""

    name = "ppa"
    critic: PrototypeDecoder

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: PPAConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        ppa = config or PPAConfig()
        gen = torch.Generator().manual_seed(derive_seed(seed, "ppa-prototypes") % 2**63)
        decoder = PrototypeDecoder(dim, ppa.num_prototypes, ppa.epsilon, gen)
        super().__init__(
            num_users,
            num_items,
            dim,
            ppa.unicdr(),
            seed=seed,
            device=device,
            critic=decoder,
            project_pooled=False,
        )
        self.ppa = ppa

    def prototype_loss(self, distances: Tensor, label: int) -> Tensor:
        """``L_p`` for rows of class ``label``: cross-entropy of the prototype logits plus
        ``(w_c cluster + w_s separation + w_d diversity) / B``."""
        cfg, decoder = self.ppa, self.critic
        rows = distances.shape[0]
        target = torch.full((rows,), label, dtype=torch.long, device=distances.device)
        ce = F.cross_entropy(decoder.logits(distances), target)
        own, other = decoder.of_class(distances, label)
        cluster = own.min(1).values.mean()
        separation = -other.min(1).values.mean()
        diversity = decoder.diversity(cfg.diversity_margin)
        extra = (
            cfg.cluster_weight * cluster
            + cfg.separation_weight * separation
            + cfg.diversity_weight * diversity
        )
        return ce + extra / rows

    def contrastive(self, specific: Tensor, shared: Tensor) -> Tensor:
        """``(1 - lambda) L_critic + lambda_pp L_p`` over the own pairs (class 1) and the
        rolled pairs (class 0) of the batch's specific [B, D] and shared [B, D] parts."""
        cfg = self.ppa
        critic_weight = 1.0 - cfg.lambda_loss
        rows = specific.shape[0]
        total = specific.new_zeros(())
        if rows < 2 or (critic_weight == 0 and cfg.lambda_pp == 0):
            return total
        shift = self.shifted(rows, specific.device)
        for x, label in ((specific, 1), (specific[shift], 0)):
            distances = self.critic.distances(x)  # [B, 2P]
            if cfg.lambda_pp > 0:
                total = total + cfg.lambda_pp * self.prototype_loss(distances, label)
            if critic_weight > 0:
                nearest = self.critic.nearest(distances, label)  # [B, D]
                score = self.critic.pair_critic(nearest, shared).flatten()  # [B]
                target = torch.full_like(score, float(label))
                bce = F.binary_cross_entropy_with_logits(score, target)
                total = total + critic_weight * bce
        return total


def _build(config: PPAConfig, ctx: BuildContext) -> PPABackbone:
    return PPABackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[PPAConfig, PPABackbone] = Component(
    "ppa",
    "backbones",
    PPAConfig,
    _build,
    "PPA: UniCDR's shared/specific users with preference prototypes (cross-domain)",
)
