"""IMC-GAE (Shen et al., CIKM 2021, "Inductive Matrix Completion Using Graph Autoencoder"):
a GC-MC-style graph autoencoder whose node inputs are not only one-hot indices, so that it
learns local graph patterns that carry over to users and items unseen in training (a MICRec
baseline, inductive by design). The formulas below are written from the paper's Figure 1
and the authors' code (swtheing/IMC-GAE ``model.py``, ``train.py``, ``data.py``), which is
what this module follows where the two differ.

- Input features (the paper's Figure 1 and its caption): every node ``n`` has three
  features, each a learnable embedding of width F: its **one-hot index** feature ``o_n``
  (node-specific, transductive), its **role-aware** feature ``r_user`` or ``r_item`` (one
  per side) and the **identical** feature ``c`` shared by all nodes. The layer-0 input is
  their concatenation ``x_n = o_n || r_role(n) || c`` [3F].
- Encoder layer l (GC-MC's graph convolution with IMC-GAE's layer-wise node dropout, the
  authors' ``GCMCLayer``): ``z^l = sigma(A_hat (m^l ⊙ x^l))``, ``h^l = W^l drop(z^l) +
  b^l``, ``x^(l+1) = h^l``, with ``A_hat = D^-1/2 A D^-1/2`` (GC-MC's symmetric
  normaliser ``c_ij = sqrt(|N_i| |N_j|)``, no self loops), sigma = tanh (the authors'
  published runs), ``m^l`` a per-node Bernoulli keep mask scaled by ``1 / (1 - p_l)``
  (node dropout on the normaliser ``c_j``: a dropped node sends no message in that layer)
  and ``drop`` a feature dropout with the same rate p_l. Layer 0 propagates the embeddings
  themselves; deeper layers propagate the previous output unchanged (the authors'
  ``dot_or_identity`` passes features that are not index triples through, so GC-MC's
  per-level message weight acts only as the layer-0 embedding table). User and item sides
  share all weights (the authors' ``share_param``).
- Layer-wise node dropout (Figure 1): layer l uses ``p_l = max(0, p - l * step)``; the
  authors' code uses p = 0.7 and step 0.1 (0.7, 0.6, ...).
- Layer aggregation (the weighted sum of Figure 1): ``h = sum_l h^l / (l + 1)``.
- Decoder: GC-MC's bilinear decoder (the authors' ``BiDecoder``), ``s(u, i) = h_u^T Q h_i``;
  ``represent`` returns ``(h_U Q, h_I)`` so the pipeline's dot scorer computes exactly it.

Inductive use: a node's own one-hot embedding never enters its own representation (no self
loops), only its neighbours'; a user or item unseen in training (no training edge) is
represented from its new edges (E_new) at test, and its own one-hot embedding, never trained,
is replaced by zeros (it then sends only its role-aware and identical features, the
"identity-free" part that the node dropout trains the model to rely on).

Implicit feedback (MICRec's setting): the paper reconstructs explicit ratings (one subgraph,
one weight per rating level, softmax cross-entropy over levels). Here there is one level
(an interaction), trained with BPR on the bilinear score (the training step's BPR on
``represent``'s dot products). With one level, the basis decompositions of the encoder
weights (``att @ basis``) and of the decoder (``sum_s a_s P_s``) each collapse to a single
matrix, and the ARR regulariser (cosine similarity between adjacent levels' weights) is
empty, so ``regularization`` is 0 (the authors' code has no L2 term either).

Deviations (the shared loop owns optimisation): mini-batch BPR steps with one full encoder
pass per step instead of the authors' full-batch steps; no gradient clipping (theirs: 1.0),
no learning-rate decay on plateaus; the three embedding tables are initialised
N(0, ``init_std``) (the repo's embedding init) since the authors' Xavier init of a basis
tensor has no counterpart once the basis collapses; the output width is the run's
``trainer.dim`` (theirs ``gcn_out_units`` = 75) and F defaults to it (their
``gcn_agg_units`` / 3). The paper's Figure 1 caption says the node dropout *increases* with
depth, the authors' code decreases it (``gcn_dropout - i * 0.1``); the code's schedule is
the default and ``dropout_step < 0`` gives the other.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import AdjacencyCache, sparse_matmul
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import seen_mask
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, one_of, positive
from cdr.interfaces import Graph

ACTIVATIONS = ("tanh", "leaky_relu", "relu")


@attrs.frozen
class IMCGAEConfig(BackboneConfig):
    """num_layers: encoder layers (the authors' MovieLens runs: 2); node_dropout: p of the
    first layer (authors 0.7); dropout_step: how much less each deeper layer drops (authors
    0.1; negative = more); activation: sigma (tanh in the authors' published runs);
    feature_dim: F, width of each of the three input embeddings (0 = the run's dim);
    init_std: N(0, std) init of the input embeddings."""

    kind: str = "imcgae"
    num_layers: int = attrs.field(default=2, validator=positive)
    node_dropout: float = attrs.field(default=0.7, validator=in_range(0.0, 1.0, high_open=True))
    dropout_step: float = attrs.field(default=0.1, validator=in_range(-1.0, 1.0))
    activation: str = attrs.field(default="tanh", validator=one_of(ACTIVATIONS))
    feature_dim: int = attrs.field(default=0, validator=non_negative)
    init_std: float = attrs.field(default=0.1, validator=positive)


def layer_dropouts(config: IMCGAEConfig) -> list[float]:
    """p_l for l = 0..L-1: ``p - l * step``, clipped to [0, 0.95] (layer-wise node dropout)."""
    return [
        min(0.95, max(0.0, config.node_dropout - layer * config.dropout_step))
        for layer in range(config.num_layers)
    ]


class IMCGAEBackbone(BackboneBase):
    """Three input embeddings -> L GC-MC layers with node dropout -> weighted layer sum ->
    bilinear decoder folded into the user side; see the module docstring."""

    seen_users: Tensor  # [U] bool buffer
    seen_items: Tensor  # [I] bool buffer

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: IMCGAEConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or IMCGAEConfig()
        self.num_users, self.num_items = num_users, num_items
        width = cfg.feature_dim or dim
        gen = torch.Generator().manual_seed(seed)
        std = cfg.init_std
        n = num_users + num_items
        self.index_emb = nn.Parameter(torch.randn(n, width, generator=gen) * std)  # o_n
        self.role_emb = nn.Parameter(torch.randn(2, width, generator=gen) * std)  # r_u, r_i
        self.identical_emb = nn.Parameter(torch.randn(1, width, generator=gen) * std)  # c
        # the output layers W^l, b^l, shared by users and items
        self.outputs = nn.ModuleList(
            nn.Linear(3 * width if layer == 0 else dim, dim) for layer in range(cfg.num_layers)
        )
        for linear in self.outputs:
            assert isinstance(linear, nn.Linear)
            nn.init.xavier_uniform_(linear.weight, generator=gen)
            bound = 1.0 / linear.in_features**0.5  # torch's default bias init, seeded
            nn.init.uniform_(linear.bias, -bound, bound, generator=gen)
        self.decoder = nn.Parameter(nn.init.xavier_uniform_(torch.empty(dim, dim), generator=gen))
        self.register_buffer("seen_users", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.zeros(num_items, dtype=torch.bool))
        self.dropouts = layer_dropouts(cfg)
        self.prepared = False
        self.cache = AdjacencyCache()
        if device is not None:
            self.to(device)

    def prepare(self, graph: Graph) -> None:
        """Remember which users and items own a trained one-hot embedding (a training edge)."""
        self.seen_users.copy_(seen_mask(graph.edge_index[0], self.num_users))
        self.seen_items.copy_(seen_mask(graph.edge_index[1], self.num_items))
        self.prepared = True

    def activation(self, x: Tensor) -> Tensor:
        if self.config.activation == "tanh":
            return torch.tanh(x)
        if self.config.activation == "relu":
            return F.relu(x)
        return F.leaky_relu(x, 0.1)

    def inputs(self) -> Tensor:
        """``[U + I, 3F]``: one-hot index || role-aware || identical feature per node; the
        index part of nodes without a training edge is zero."""
        seen = torch.cat([self.seen_users, self.seen_items])  # [N]
        index = self.index_emb * seen[:, None].to(self.index_emb.dtype)  # [N, F]
        role = torch.cat(
            [
                self.role_emb[:1].expand(self.num_users, -1),
                self.role_emb[1:].expand(self.num_items, -1),
            ]
        )  # [N, F]
        identical = self.identical_emb.expand(index.shape[0], -1)  # [N, F]
        return torch.cat([index, role, identical], dim=1)

    def encode(self, graph: Graph) -> Tensor:
        """``[U + I, D]``: the layer-weighted sum of the encoder's outputs ``sum_l h^l/(l+1)``."""
        adjacency = self.cache.adjacency(graph.edge_index, self.num_users, self.num_items)
        x = self.inputs()  # [N, 3F]
        total: Tensor | None = None
        for layer, (p, linear) in enumerate(zip(self.dropouts, self.outputs, strict=True)):
            if self.training and p > 0:  # node dropout: a dropped node sends no message
                keep = torch.rand(x.shape[0], device=x.device) >= p  # [N]
                x = x * (keep.to(x.dtype) / (1.0 - p))[:, None]
            z = self.activation(sparse_matmul(adjacency, adjacency, x))  # A_hat symmetric
            h = linear(F.dropout(z, p, self.training))  # [N, D]
            total = h if total is None else total + h / (layer + 1)
            x = h
        assert total is not None
        return total

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """``(h_U Q [U, D], h_I [I, D])``: their dot product is the bilinear decoder."""
        if not self.prepared:
            self.prepare(graph)
        h = self.encode(graph)
        return h[: self.num_users] @ self.decoder, h[self.num_users :]


def _build(config: IMCGAEConfig, ctx: BuildContext) -> IMCGAEBackbone:
    return IMCGAEBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[IMCGAEConfig, IMCGAEBackbone] = Component(
    "imcgae",
    "backbones",
    IMCGAEConfig,
    _build,
    "IMC-GAE: GC-MC autoencoder with index/role/identical features, layer-wise node dropout",
)
