"""LightGCN (He et al. 2020): free ID embeddings propagated over the normalised graph.

``propagate`` is the pure function (eqs. 7-9 of the LightGCN paper, the last stage of
MICRec section 4.2); ``LightGCNBackbone`` is the transductive baseline of MICRec's table 2:
nodes unseen in training (no training edges) are initialised with the mean embedding of the
seen nodes, then propagated over the training + new edges at inference.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from cdr.backbones.adjacency import DEFAULT_CACHE, AdjacencyCache, layer_mean
from cdr.backbones.base import BackboneBase
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import non_negative, one_of, positive
from cdr.interfaces import Graph


def propagate(
    edge_index: Tensor,
    user_emb: Tensor,
    item_emb: Tensor,
    num_layers: int,
    *,
    cache: AdjacencyCache | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean of layers 0..L of LightGCN propagation: ``(users [U, D], items [I, D])``.

    edge_index: [2, E] (user, item) pairs; user_emb: [U, D]; item_emb: [I, D]. The normalised
    adjacency ``D^-1/2 A D^-1/2`` (no self loops) is built once per edge_index tensor and
    cached (``cache``, default a module-level one).
    """
    if num_layers < 0:
        raise ValueError(f"num_layers: {num_layers!r} must be >= 0")
    num_users, num_items = user_emb.shape[0], item_emb.shape[0]
    x = torch.cat([user_emb, item_emb])  # [U + I, D]
    if num_layers > 0:
        adjacency = (cache or DEFAULT_CACHE).adjacency(edge_index, num_users, num_items)
        x = layer_mean(adjacency, x, num_layers)
    return x[:num_users], x[num_users:]


def seen_mask(index: Tensor, size: int) -> Tensor:
    """[size] bool: which nodes appear in ``index`` (a node with at least one edge)."""
    mask = torch.zeros(size, dtype=torch.bool, device=index.device)
    mask[index] = True
    return mask


def fill_unseen(emb: Tensor, seen: Tensor) -> Tensor:
    """``[N, D]``: rows of unseen nodes replaced by the mean of the seen rows."""
    if bool(seen.all()) or not bool(seen.any()):
        return emb
    mean = emb[seen].mean(0, keepdim=True)  # [1, D]
    return torch.where(seen[:, None], emb, mean)


INITS = ("normal", "xavier")


@attrs.frozen
class LightGCNConfig(BackboneConfig):
    """num_layers: propagation depth L (MICRec: 3); init: ``normal`` = N(0, init_std) (INMO's
    reference code, igcn_cf) or ``xavier`` (uniform; RecBole's LightGCN); reg_weight:
    lambda of the L2 term on the batch's layer-0 embeddings, ``lambda * mean_b(||e_u||^2 +
    ||e_i+||^2 + ||e_i-||^2)`` (igcn_cf's BPRTrainer; 1e-4 is its LightGCN setting)."""

    kind: str = "lightgcn"
    num_layers: int = attrs.field(default=3, validator=non_negative)
    init_std: float = attrs.field(default=0.1, validator=positive)
    init: str = attrs.field(default="normal", validator=one_of(INITS))
    reg_weight: float = attrs.field(default=1e-4, validator=non_negative)


class LightGCNBackbone(BackboneBase):
    """Free embeddings ``[U, D]``, ``[I, D]`` + LightGCN propagation (0 layers = MF).

    ``prepare(train_graph)`` records which nodes are seen (called by the first ``represent``
    if the pipeline did not); unseen nodes get the mean seen embedding.
    """

    seen_users: Tensor  # [U] bool buffer
    seen_items: Tensor  # [I] bool buffer

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        num_layers: int = 3,
        init_std: float = 0.1,
        *,
        init: str = "normal",
        reg_weight: float = 0.0,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.num_layers, self.reg_weight = num_layers, reg_weight
        if init == "xavier":
            user = nn.init.xavier_uniform_(torch.empty(num_users, dim), generator=gen)
            item = nn.init.xavier_uniform_(torch.empty(num_items, dim), generator=gen)
        else:
            user = torch.randn(num_users, dim, generator=gen) * init_std
            item = torch.randn(num_items, dim, generator=gen) * init_std
        self.user_emb = nn.Parameter(user)
        self.item_emb = nn.Parameter(item)
        self.register_buffer("seen_users", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.zeros(num_items, dtype=torch.bool))
        self.prepared = False
        self.cache = AdjacencyCache()
        if device is not None:
            self.to(device)

    def prepare(self, graph: Graph) -> None:
        """Remember the training graph's seen users and items."""
        self.seen_users.copy_(seen_mask(graph.edge_index[0], self.seen_users.numel()))
        self.seen_items.copy_(seen_mask(graph.edge_index[1], self.seen_items.numel()))
        self.prepared = True

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if not self.prepared:
            self.prepare(graph)
        users: Tensor = self.user_emb  # [U, D]
        items: Tensor = self.item_emb  # [I, D]
        if not self.training:  # in training, unseen nodes are isolated and in no loss
            users = fill_unseen(users, self.seen_users)
            items = fill_unseen(items, self.seen_items)
        return propagate(graph.edge_index, users, items, self.num_layers, cache=self.cache)

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``reg_weight * mean_b(||e_u||^2 + sum_j ||e_{i_j}||^2)`` over the batch's layer-0
        embeddings: users [B], items [B, n] (positive, negatives)."""
        if self.reg_weight == 0 or users.numel() == 0:
            return self.user_emb.new_zeros(())
        squares = self.user_emb[users].pow(2).sum() + self.item_emb[items].pow(2).sum()
        return self.reg_weight * squares / users.numel()



def _build(config: LightGCNConfig, ctx: BuildContext) -> LightGCNBackbone:
    return LightGCNBackbone(
        ctx.num_users,
        ctx.num_items,
        ctx.dim,
        config.num_layers,
        config.init_std,
        init=config.init,
        reg_weight=config.reg_weight,
        seed=ctx.seed,
        device=ctx.device,
    )


component = Component(
    "lightgcn",
    "backbones",
    LightGCNConfig,
    _build,
    "LightGCN over free ID embeddings (unseen nodes: mean embedding)",
)
