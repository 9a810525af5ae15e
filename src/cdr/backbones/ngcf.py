"""NGCF (Wang et al., SIGIR 2019, "Neural Graph Collaborative Filtering"): graph CF whose
layers transform and mix messages instead of only averaging them (a MICRec baseline).

- Layer (messages and aggregation eqs. 1-3; matrix form eq. 7, L of eq. 8): with
  ``L = D^-1/2 A D^-1/2`` the normalised bipartite adjacency (p_ui = 1 / sqrt(|N_u| |N_i|))
  and ``E^(l-1)`` [N, d_(l-1)] the previous layer,
  ``E^(l) = LeakyReLU((L + I) E^(l-1) W_1 + (L E^(l-1) ⊙ E^(l-1)) W_2)``: the first term
  is the self message plus the neighbours' messages (``m_u<-u = W_1 e_u``, ``m_u<-i =
  p_ui W_1 e_i``), the second the bi-interaction ``p_ui W_2 (e_i ⊙ e_u)``; W_1, W_2 carry
  biases (the authors' code); LeakyReLU slope 0.2; the paper's message dropout on each
  layer's output.
- Representation (eq. 9): the concatenation ``e_u* = e_u^(0) || ... || e_u^(L)``; the
  score (eq. 10) is the inner product, so the pipeline's dot scorer applies unchanged.
- Objective (eq. 11): ``L = L_BPR + lambda ||Theta||^2``; the training step supplies BPR,
  ``regularization`` the L2 term on the batch's layer-0 embeddings, ``lambda * (||e_u||^2
  + ||e_i||^2 + ||e_j||^2) / (2B)`` (the authors' ``l2_loss`` / batch size, BPR being a
  batch mean).

Defaults follow the paper's settings (3 layers, message dropout 0.1, node dropout 0,
lambda 1e-5, Xavier init) and RecBole's NGCF (same values); LeakyReLU slope 0.2 as both
codes. Deviations, each because the interfaces or the comparison require it:

- Width: the run's ``trainer.dim`` is the width of the *final* (concatenated) vector, so
  that aligners, generators and serving see one representation size for every backbone.
  The L + 1 parts split it evenly (``dim // (L + 1)`` per propagation layer, the remainder
  to layer 0): dim 256 with 3 layers is the paper's and RecBole's setting (64-d embeddings,
  hidden sizes [64, 64, 64]); dim 64 gives 16 + 16 + 16 + 16.
- Each layer's output is L2-normalised before it is concatenated (the authors' and
  RecBole's code, absent from eq. 7) and, as in RecBole, that normalised output is what the
  next layer propagates (the authors' TF code propagates the un-normalised one); RecBole is
  the implementation this module is compared against.
- Node dropout (dropping adjacency entries per step) is not implemented: its default is 0
  in the paper's best setting and in RecBole.
- The L2 term is on layer-0 embeddings only (the authors' later code and RecBole's ego
  embeddings), not on W_1, W_2 (use ``trainer.weight_decay`` for those).
- Unseen users/items (no training edge) get the mean layer-0 embedding of the seen ones at
  inference and are then propagated over the training + new edges, as LightGCN here.
"""

from __future__ import annotations

import itertools

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import sparse_matmul
from cdr.backbones.lightgcn import LightGCNBackbone, fill_unseen
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative
from cdr.errors import ConfigError
from cdr.interfaces import Graph


@attrs.frozen
class NGCFConfig(BackboneConfig):
    """num_layers: L (paper 3); message_dropout: dropout on each layer's output (paper 0.1);
    reg_weight: lambda of eq. 11 on the batch's layer-0 embeddings (paper 1e-5);
    negative_slope: of the LeakyReLU (0.2 in the authors' and RecBole's code)."""

    kind: str = "ngcf"
    num_layers: int = attrs.field(default=3, validator=in_range(1, 16))
    message_dropout: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))
    reg_weight: float = attrs.field(default=1e-5, validator=non_negative)
    negative_slope: float = attrs.field(default=0.2, validator=non_negative)


def layer_widths(dim: int, num_layers: int) -> tuple[int, ...]:
    """(d_0, d_1, ..., d_L) summing to ``dim``: ``dim // (L + 1)`` per propagation layer,
    the rest to the embeddings (layer 0)."""
    per = dim // (num_layers + 1)
    if per < 1:
        raise ConfigError(
            f"backbone.num_layers: NGCF concatenates {num_layers + 1} layers into "
            f"trainer.dim = {dim} columns; raise trainer.dim or lower num_layers"
        )
    return (dim - num_layers * per, *([per] * num_layers))


class BiInteractionLayer(nn.Module):
    """One NGCF layer before its activation (eq. 7):
    ``(L + I) E W_1 + b_1 + (L E ⊙ E) W_2 + b_2`` for ``E`` [N, d_in] -> [N, d_out]."""

    def __init__(self, d_in: int, d_out: int, generator: torch.Generator) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_in, d_out)
        self.w2 = nn.Linear(d_in, d_out)
        for linear in (self.w1, self.w2):  # Xavier weights, zero biases
            nn.init.xavier_uniform_(linear.weight, generator=generator)
            nn.init.zeros_(linear.bias)

    def forward(self, adjacency: Tensor, x: Tensor) -> Tensor:
        side = sparse_matmul(adjacency, adjacency, x)  # L E: [N, d_in] (L is symmetric)
        return self.w1(x + side) + self.w2(side * x)  # [N, d_out]


class NGCFBackbone(LightGCNBackbone):
    """Layer-0 embeddings [U, d_0], [I, d_0] + L bi-interaction layers; ``represent``
    returns the concatenation [U, dim], [I, dim] (see the module docstring)."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: NGCFConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.config = config or NGCFConfig()
        widths = layer_widths(dim, self.config.num_layers)
        super().__init__(
            num_users, num_items, widths[0], self.config.num_layers, init="xavier", seed=seed
        )
        gen = torch.Generator().manual_seed(seed + 1)
        self.layers = nn.ModuleList(
            BiInteractionLayer(d_in, d_out, gen) for d_in, d_out in itertools.pairwise(widths)
        )
        if device is not None:
            self.to(device)

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if not self.prepared:
            self.prepare(graph)
        users: Tensor = self.user_emb  # [U, d_0]
        items: Tensor = self.item_emb  # [I, d_0]
        if not self.training:  # in training, unseen nodes are isolated and in no loss
            users = fill_unseen(users, self.seen_users)
            items = fill_unseen(items, self.seen_items)
        num_users = users.shape[0]
        adjacency = self.cache.adjacency(graph.edge_index, num_users, items.shape[0])
        x = torch.cat([users, items])  # [N, d_0]
        parts = [x]
        cfg = self.config
        for layer in self.layers:
            x = F.leaky_relu(layer(adjacency, x), cfg.negative_slope)  # eq. 7
            x = F.dropout(x, cfg.message_dropout, self.training)  # message dropout
            x = F.normalize(x, dim=1)  # [N, d_l]
            parts.append(x)
        out = torch.cat(parts, dim=1)  # eq. 9: [N, dim]
        return out[:num_users], out[num_users:]

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``lambda * (||e_u||^2 + sum_j ||e_(i_j)||^2) / (2B)`` over the batch's layer-0
        embeddings: users [B], items [B, n] (positive, negatives) (eq. 11)."""
        if self.config.reg_weight == 0 or users.numel() == 0:
            return self.user_emb.new_zeros(())
        squares = self.user_emb[users].pow(2).sum() + self.item_emb[items].pow(2).sum()
        return self.config.reg_weight * squares / (2 * users.numel())


def _build(config: NGCFConfig, ctx: BuildContext) -> NGCFBackbone:
    return NGCFBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[NGCFConfig, NGCFBackbone] = Component(
    "ngcf",
    "backbones",
    NGCFConfig,
    _build,
    "NGCF: bi-interaction graph layers, concatenated (unseen nodes: mean embedding)",
)
