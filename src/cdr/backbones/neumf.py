"""NeuMF (He et al., WWW 2017, "Neural Collaborative Filtering"): a GMF and an MLP over
free ID embeddings, fused by one prediction layer and trained pointwise with the binary
cross-entropy on observed and sampled unobserved pairs (a MICRec baseline).

- GMF (section 3.2, eqs. 8-9): ``phi_GMF = p_u^G ⊙ q_i^G``.
- MLP (section 3.3, eq. 10): ``z_1 = [p_u^M; q_i^M]``,
  ``phi_l = ReLU(W_l phi_(l-1) + b_l)``: a tower whose widths halve layer by layer (the
  "tower pattern").
- NeuMF (section 3.4, eq. 12): ``y_hat_ui = sigma(h^T [phi_GMF; phi_MLP])`` (with a bias,
  as the authors' Keras Dense layer).
- Loss (section 3.1.1, eq. 7):
  ``L = -sum_(u,i) in Y y_ui log y_hat_ui + (1 - y_ui) log(1 - y_hat_ui)`` over the
  observed pairs (y = 1) and ``num_negatives`` uniformly sampled unobserved pairs per
  observed one (y = 0), as a mean over the pairs (the authors' Keras
  ``binary_crossentropy`` and RecBole's ``BCEWithLogitsLoss``).

As a backbone: ``traits.objective = "own"`` (``regularization`` is the whole batch loss:
the BCE over the training step's (user, positive, negative) triples plus
``num_negatives - 1`` further negatives per positive) and ``traits.scoring = "own"`` (the
preference is not a dot product: ``score``/``score_pairs`` run eq. 12). ``represent``
returns the embedding tables, users ``[U, dim] = [p^G | p^M]``, items ``[I, dim] = [q^G |
q^M]``. The full ``[B, I]`` scoring never builds the ``[B * I, 2 m]`` concatenation: the
first tower layer splits as ``W_1 [p; q] = W_1^u p + W_1^i q`` (user and item halves
computed once each), and the GMF term is ``p^G diag(h^G) Q^G^T``, one matrix product; only
the ``[b, I, width_1]`` block of the tower's first layer is materialised, ``b`` users at a
time so that it stays under ``block`` elements.

Defaults follow the paper and the authors' code (hexiangnan/neural_collaborative_filtering:
3 ReLU tower layers [64 -> 32 -> 16 -> 8], 4 negatives per positive, no regularisation,
Adam; embeddings N(0, 0.01), tower layers Glorot-uniform with zero biases, prediction layer
LeCun-uniform). Deviations, each because the interfaces or the comparison require it:

- Widths: the run's ``trainer.dim`` is the width of the representation (one size for every
  backbone, so aligners and generators compose): GMF gets ``dim // 2`` columns, the MLP
  embedding ``m = dim - dim // 2``, and the tower is ``2m -> m -> m/2 -> ...``
  (``mlp_layers`` layers). dim 64 gives the authors' tower ``64 -> 32 -> 16 -> 8`` with 32
  GMF factors (the paper ties the GMF size to the last tower width, 8 there).
- No pre-training of GMF and MLP (section 3.4.1): the paper reports NeuMF without
  pre-training too, and RecBole's default does not pre-train.
- Negatives: the first negative of each positive is the shared sampler's (uniform over the
  items seen in training, redrawn where it is a positive); the other ``num_negatives - 1``
  are drawn here the same way from a generator seeded by (seed, step), the step counter
  being a buffer of the module, so a resumed run draws the same negatives. The authors
  draw from all items.
- ``dropout`` (0 by default, as the paper; RecBole uses 0.1) acts on the tower's hidden
  outputs in the training loss only, never on its input (which keeps the split of the
  first layer exact); ``score``/``score_pairs`` are the deterministic model.
- Scores are the logits ``h^T [...]``: the sigmoid is monotone, so rankings are the same.
- Unseen users/items (no training edge) get the mean embedding rows of the seen ones at
  inference (both the GMF and the MLP parts), as the paper's baselines in MICRec's table 2
  and LightGCN here: NeuMF cannot use their new edges without retraining.
"""

from __future__ import annotations

import math
from typing import cast

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import fill_unseen, seen_mask
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, positive
from cdr.errors import ConfigError
from cdr.interfaces import BackboneTraits, Graph
from cdr.seeding import derive_seed

#: elements of the largest [b, I, width_1] block ``score`` builds (64 MiB of float32)
SCORE_BLOCK = 2**24


@attrs.frozen
class NeuMFConfig(BackboneConfig):
    """mlp_layers: ReLU layers of the MLP tower (widths halve from the 2m input; paper 3);
    num_negatives: sampled unobserved pairs per observed pair (paper 4); dropout: on the
    tower's hidden outputs in training (paper 0); init_std: N(0, std) embeddings (paper
    0.01)."""

    kind: str = "neumf"
    mlp_layers: int = attrs.field(default=3, validator=in_range(1, 8))
    num_negatives: int = attrs.field(default=4, validator=in_range(1, 64))
    dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 1.0, high_open=True))
    init_std: float = attrs.field(default=0.01, validator=positive)


def tower_widths(dim: int, mlp_layers: int) -> tuple[int, int, tuple[int, ...]]:
    """``(gmf_dim, mlp_dim, (w_1, ..., w_L))`` for a representation ``dim`` wide: GMF gets
    ``dim // 2``, the MLP embedding the rest, and the tower halves from ``m``."""
    gmf, mlp = dim // 2, dim - dim // 2
    widths = tuple(mlp // 2**layer for layer in range(mlp_layers))
    if gmf < 1 or widths[-1] < 1:
        raise ConfigError(
            f"backbone.mlp_layers: a NeuMF tower of {mlp_layers} halving layers does not fit "
            f"trainer.dim = {dim} (GMF {gmf}, MLP embedding {mlp} columns); raise "
            "trainer.dim or lower mlp_layers"
        )
    return gmf, mlp, widths


def lecun_uniform_(weight: Tensor, generator: torch.Generator) -> Tensor:
    """U(-sqrt(3 / fan_in), sqrt(3 / fan_in)) (Keras' ``lecun_uniform``)."""
    bound = math.sqrt(3.0 / weight.shape[1])
    with torch.no_grad():
        return weight.uniform_(-bound, bound, generator=generator)


def draw_negatives(
    users: Tensor, pool: Tensor, keys: Tensor, num_items: int, count: int, gen: torch.Generator
) -> Tensor:
    """[B, count] items drawn uniformly from ``pool`` [P], redrawn (vectorised, up to 32
    rounds, each over the remaining clashes only) where (user, item) is a training edge
    (``keys``: sorted ``user * I + item``); a user whose positives cover the pool keeps
    clashing draws."""
    users = users.cpu()[:, None].expand(-1, count)  # [B, count]
    neg = pool[torch.randint(pool.numel(), users.shape, generator=gen)]
    for _ in range(32):
        key = users * num_items + neg
        at = torch.searchsorted(keys, key).clamp(max=max(keys.numel() - 1, 0))
        clash = keys[at] == key if keys.numel() else torch.zeros_like(key, dtype=torch.bool)
        n = int(clash.sum())
        if n == 0:
            break
        neg[clash] = pool[torch.randint(pool.numel(), (n,), generator=gen)]
    return neg


class NeuMFBackbone(BackboneBase):
    """GMF + MLP over free embeddings, fused by eq. 12 (see the module docstring)."""

    traits = BackboneTraits(objective="own", scoring="own")
    seen_users: Tensor  # [U] bool
    seen_items: Tensor  # [I] bool
    step: Tensor  # () int64: training steps taken (seeds the extra negatives)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: NeuMFConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
        block: int = SCORE_BLOCK,
    ) -> None:
        super().__init__()
        self.config = cfg = config or NeuMFConfig()
        self.gmf_dim, self.mlp_dim, widths = tower_widths(dim, cfg.mlp_layers)
        self.seed, self.block, self.num_items = seed, block, num_items
        gen = torch.Generator().manual_seed(seed)
        # [p^G | p^M] and [q^G | q^M] in one table each: represent() returns them as they are
        self.user_emb = nn.Parameter(torch.randn(num_users, dim, generator=gen) * cfg.init_std)
        self.item_emb = nn.Parameter(torch.randn(num_items, dim, generator=gen) * cfg.init_std)
        ins = (2 * self.mlp_dim, *widths[:-1])
        self.tower = nn.ModuleList(nn.Linear(a, b) for a, b in zip(ins, widths, strict=True))
        for layer in self.linears:  # Keras Dense defaults: Glorot-uniform, zero bias
            nn.init.xavier_uniform_(layer.weight, generator=gen)
            nn.init.zeros_(layer.bias)
        self.predict = nn.Linear(self.gmf_dim + widths[-1], 1)  # h of eq. 12
        lecun_uniform_(self.predict.weight, gen)
        nn.init.zeros_(self.predict.bias)
        self.register_buffer("seen_users", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.zeros(num_items, dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.keys = torch.zeros(0, dtype=torch.long)  # sorted training keys (CPU)
        self.pool = torch.arange(num_items)  # negatives' pool (CPU): the seen items
        self.prepared = False
        if device is not None:
            self.to(device)

    @property
    def linears(self) -> list[nn.Linear]:
        """The tower's layers W_1 .. W_L."""
        return [cast(nn.Linear, layer) for layer in self.tower]

    def prepare(self, graph: Graph) -> None:
        """Seen users/items, the training keys and the negatives' pool of ``graph``."""
        users, items = graph.edge_index[0], graph.edge_index[1]
        self.seen_users.copy_(seen_mask(users, self.seen_users.numel()))
        self.seen_items.copy_(seen_mask(items, self.seen_items.numel()))
        self.keys = torch.unique(users.cpu().long() * self.num_items + items.cpu().long())
        pool = torch.nonzero(self.seen_items.cpu()).flatten()
        self.pool = pool if pool.numel() else torch.arange(self.num_items)
        self.prepared = True

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """``(users [U, dim], items [I, dim])``: the embedding tables; at inference unseen
        rows are the mean of the seen ones."""
        if not self.prepared:
            self.prepare(graph)
        users: Tensor = self.user_emb
        items: Tensor = self.item_emb
        if not self.training:  # in training, unseen nodes are in no loss
            users = fill_unseen(users, self.seen_users)
            items = fill_unseen(items, self.seen_items)
        return users, items

    def pair_logits(
        self, users: Tensor, items: Tensor, gen: torch.Generator | None = None
    ) -> Tensor:
        """eq. 12 before the sigmoid for aligned rows users [P, dim], items [P, dim] -> [P];
        ``gen`` (training) draws the dropout masks of the tower's hidden outputs."""
        g = self.gmf_dim
        gmf = users[:, :g] * items[:, :g]  # eq. 8: [P, g]
        x = torch.cat([users[:, g:], items[:, g:]], dim=1)  # z_1: [P, 2m]
        p = self.config.dropout
        for layer in self.linears:
            x = F.relu(layer(x))  # eq. 10: [P, w_l]
            if gen is not None and p > 0:
                keep = torch.rand(x.shape, generator=gen) >= p
                x = x * keep.to(x.device) / (1 - p)
        return self.predict(torch.cat([gmf, x], dim=1)).squeeze(1)  # [P]

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of eq. 12 for aligned pairs users [B, dim], items [B, dim] -> [B]."""
        return self.pair_logits(users, items)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        """Logits of eq. 12 for every pair: users [B, dim] x items [I, dim] -> [B, I]."""
        g = self.gmf_dim
        h = self.predict.weight[0]  # [g + w_L]
        out = (users[:, :g] * h[:g]) @ items[:, :g].T + self.predict.bias  # GMF: [B, I]
        first, *rest = self.linears
        w_user, w_item = first.weight[:, : self.mlp_dim], first.weight[:, self.mlp_dim :]
        user_part = users[:, g:] @ w_user.T + first.bias  # [B, w_1]
        item_part = items[:, g:] @ w_item.T  # [I, w_1]
        h_mlp = h[g:]  # [w_L]
        rows = max(1, self.block // max(1, items.shape[0] * first.out_features))
        chunks = []
        for start in range(0, users.shape[0], rows):  # blocks of users, not single users
            x = F.relu(user_part[start : start + rows, None, :] + item_part[None])  # [b, I, w_1]
            for layer in rest:
                x = F.relu(layer(x))  # [b, I, w_l]
            chunks.append(x @ h_mlp)  # [b, I]
        mlp = torch.cat(chunks) if chunks else out.new_zeros(out.shape)
        return out + mlp

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """eq. 7 as a mean over the batch's pairs: users [B] with their positive
        ``items[:, 0]`` (y = 1), the sampler's negatives ``items[:, 1:]`` and
        ``num_negatives - (n - 1)`` more drawn here (y = 0)."""
        if users.numel() == 0:
            return self.user_emb.new_zeros(())
        if not self.prepared:
            self.prepare(graph)
        items = items if items.dim() == 2 else items[:, None]
        gen = None
        if self.training:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "neumf", int(self.step)))
            self.step += 1
        negatives = items[:, 1:]  # [B, n0]
        extra = self.config.num_negatives - negatives.shape[1]
        if extra > 0:
            draw_gen = gen or torch.Generator().manual_seed(derive_seed(self.seed, "neumf-eval"))
            more = draw_negatives(users, self.pool, self.keys, self.num_items, extra, draw_gen)
            negatives = torch.cat([negatives, more.to(items.device)], dim=1)
        candidates = torch.cat([items[:, :1], negatives], dim=1)  # [B, 1 + n]
        labels = torch.zeros(candidates.shape, device=self.user_emb.device)
        labels[:, 0] = 1.0
        pair_users = users[:, None].expand_as(candidates).reshape(-1)  # [B (1 + n)]
        logits = self.pair_logits(
            self.user_emb[pair_users], self.item_emb[candidates.reshape(-1)], gen
        )
        return F.binary_cross_entropy_with_logits(logits, labels.reshape(-1))


def _build(config: NeuMFConfig, ctx: BuildContext) -> NeuMFBackbone:
    return NeuMFBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[NeuMFConfig, NeuMFBackbone] = Component(
    "neumf",
    "backbones",
    NeuMFConfig,
    _build,
    "NeuMF: GMF + MLP tower, BCE with sampled negatives (unseen nodes: mean embedding)",
)
