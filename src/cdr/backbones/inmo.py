"""``inmo``: INMO's template-based inductive backbone, with MICRec's modality aggregation.

MICRec sections 4.1-4.2, in the order ``represent`` runs them:

1. template representations (eq. 1): ``x_u = (|N_u ∩ I_tem| + 1)^-alpha sum_{i in N_u ∩ I_tem}
   (e_i + b_user)`` and likewise ``x_i`` from template users; only templates own learnable
   embeddings, so a user/item unseen in training is represented from its new edges (E_new)
   to templates, without retraining;
2. modality-based aggregation (eqs. 3-4; :mod:`cdr.backbones.aggregation`) when enabled and
   item features were given (``set_modalities``);
3. LightGCN propagation over the graph (:func:`cdr.backbones.lightgcn.propagate`).

``regularization`` is ``beta`` times INMO's self-enhanced loss (eq. 6) on template embeddings.
alpha is annealed by ``set_epoch`` from ``alpha_start`` to ``alpha_end``. With
``multimodal = false`` this is INMO (MICRec's baseline and its "w/o MM" ablation).

Where the papers are silent, INMO's reference code (WuYunfan/igcn_cf, ``model.IGCN``,
``trainer.IGCNTrainer``, ``config.py``) decides:
- the schedule: the reference starts at a = 1 and multiplies it by delta = 0.99 after every
  epoch, normalising a node's template sum by ``(|N ∩ tem| + 1)^((a - 1)/2 - 1/2)``; in this
  module's exponent that is ``alpha = 1 - a / 2 = 1 - 0.5 * 0.99^epoch`` (0.5 at epoch 0,
  0.59 at 20, 0.75 at 69): ``alpha_schedule = "geometric"`` (the default),
  ``alpha(e) = alpha_end - (alpha_end - alpha_start) * alpha_decay^e``. The linear and
  cosine schedules over ``alpha_epochs`` are options (a linear ramp reaching 1 by epoch 20
  normalises far sooner than INMO does);
- template dropout 0.3 (the reference's Gowalla/Yelp IGCN configs), N(0, 0.1) embeddings,
  no L2 term (``l2_reg = 0`` for IGCN there) and the SE weight 0.01 (``aux_reg``).
Deviation: the reference adds one learned bias feature per row inside the normalised sum;
here the biases ``b_user``/``b_item`` are added to every template neighbour (eq. 1 as
MICRec writes it).
"""

from __future__ import annotations

import math
import warnings

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import AdjacencyCache, IdentityCache, csr_from_edges, sparse_matmul
from cdr.backbones.aggregation import ModalityFeatures, Neighbourhoods, aggregate, neighbourhoods
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import propagate
from cdr.backbones.templates import RANKINGS, select_templates
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, one_of, positive
from cdr.interfaces import BackboneTraits, Graph

SCHEDULES = ("geometric", "linear", "cosine", "constant")


@attrs.frozen
class INMOConfig(BackboneConfig):
    """INMO templates (+ MICRec modality aggregation) + LightGCN.

    template_ranking / template_ratio: how templates are chosen (sort = INMO's normalised
    degree, degree, random) and which fraction of the training nodes they are (1.0 = all).
    alpha_*: the normalisation exponent; schedule geometric (INMO's code: the distance to
    ``alpha_end`` shrinks by ``alpha_decay`` every epoch), linear / cosine over
    ``alpha_epochs``, or constant (``alpha_end``). dropout: edge dropout of the template
    aggregation while training (INMO 0.3). se_weight: beta of the SE loss (MICRec 0.01).
    multimodal / text / image: modality aggregation and which modalities it uses (ablations
    w/o MM, w/o TXT, w/o VIS); k, w: neighbours and text weight (MICRec K = 3, w = 0.9);
    text_encoder / image_encoder: registered encoders giving the item features.
    """

    kind: str = "inmo"
    num_layers: int = attrs.field(default=3, validator=non_negative)
    template_ranking: str = attrs.field(default="sort", validator=one_of(RANKINGS))
    template_ratio: float = attrs.field(default=1.0, validator=in_range(0.0, 1.0, low_open=True))
    alpha_start: float = attrs.field(default=0.5, validator=non_negative)
    alpha_end: float = attrs.field(default=1.0, validator=non_negative)
    alpha_epochs: int = attrs.field(default=20, validator=non_negative)
    alpha_schedule: str = attrs.field(default="geometric", validator=one_of(SCHEDULES))
    alpha_decay: float = attrs.field(default=0.99, validator=in_range(0.0, 1.0, low_open=True))
    dropout: float = attrs.field(default=0.3, validator=in_range(0.0, 1.0, high_open=True))
    se_weight: float = attrs.field(default=0.01, validator=non_negative)
    init_std: float = attrs.field(default=0.1, validator=positive)
    multimodal: bool = True
    text: bool = True
    image: bool = True
    k: int = attrs.field(default=3, validator=positive)
    w: float = attrs.field(default=0.9, validator=in_range(0.0, 1.0))
    text_encoder: str = "plm"
    image_encoder: str = "image"


def alpha_at(config: INMOConfig, epoch: int) -> float:
    """The normalisation exponent for ``epoch`` (0-based) under the configured schedule."""
    if config.alpha_schedule == "geometric":
        gap = config.alpha_end - config.alpha_start
        return config.alpha_end - gap * config.alpha_decay**epoch
    if config.alpha_schedule == "constant" or config.alpha_epochs == 0:
        return config.alpha_end
    t = min(1.0, epoch / config.alpha_epochs)
    if config.alpha_schedule == "cosine":
        t = 0.5 - 0.5 * math.cos(math.pi * t)
    return config.alpha_start + t * (config.alpha_end - config.alpha_start)


@attrs.frozen(eq=False)
class TemplateEdges:
    """Edges from nodes to templates in one graph, stacked users-then-items (N = U + I).

    matrix / matrix_t: CSR [N, N] with ones at (node, template) and its transpose; order_t:
    [T] position of each ``matrix_t`` entry among ``matrix``'s (to drop edges in both at
    once); count: [N] template neighbours per row (the |N ∩ tem| of eq. 1).
    """

    matrix: Tensor
    matrix_t: Tensor
    order_t: Tensor
    count: Tensor

    def with_values(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Both matrices with new values [T] (given in ``matrix``'s entry order)."""
        n = self.matrix.shape[0]
        m = self.matrix
        mt = self.matrix_t
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            a = torch.sparse_csr_tensor(
                m.crow_indices(), m.col_indices(), values, (n, n), check_invariants=False
            )
            b = torch.sparse_csr_tensor(
                mt.crow_indices(),
                mt.col_indices(),
                values[self.order_t],
                (n, n),
                check_invariants=False,
            )
        return a, b


def template_edges(
    edge_index: Tensor, user_tem: Tensor, item_tem: Tensor, num_users: int, num_items: int
) -> TemplateEdges:
    n = num_users + num_items
    key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())
    users, items = key // num_items, key % num_items
    to_item = item_tem[items]  # user u -> template item i
    to_user = user_tem[users]  # item i -> template user u
    rows = torch.cat([users[to_item], items[to_user] + num_users])
    cols = torch.cat([items[to_item] + num_users, users[to_user]])
    order = torch.argsort(rows * n + cols)
    rows, cols = rows[order], cols[order]
    ones = torch.ones(rows.numel(), device=rows.device)
    order_t = torch.argsort(cols * n + rows)
    return TemplateEdges(
        matrix=csr_from_edges(rows, cols, ones, (n, n)),
        matrix_t=csr_from_edges(cols, rows, ones, (n, n)),
        order_t=order_t,
        count=torch.bincount(rows, minlength=n).float(),
    )


class INMOBackbone(BackboneBase):
    """Template embeddings -> (modality aggregation) -> LightGCN; see the module docstring.

    Embedding tables span all users/items ([U, D], [I, D]) so checkpoints have fixed shapes;
    only template rows are ever read (the others get no gradient).
    """

    user_templates: Tensor  # [U] bool buffer
    item_templates: Tensor  # [I] bool buffer
    alpha: Tensor  # [] buffer

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: INMOConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = config or INMOConfig()
        cfg = self.config
        self.traits = BackboneTraits(
            text_encoder=cfg.text_encoder if cfg.multimodal and cfg.text else None,
            image_encoder=cfg.image_encoder if cfg.multimodal and cfg.image else None,
        )
        self.num_users, self.num_items, self.seed = num_users, num_items, seed
        gen = torch.Generator().manual_seed(seed)
        std = self.config.init_std
        self.user_emb = nn.Parameter(torch.randn(num_users, dim, generator=gen) * std)
        self.item_emb = nn.Parameter(torch.randn(num_items, dim, generator=gen) * std)
        self.user_bias = nn.Parameter(torch.zeros(dim))  # b_user: added to template items
        self.item_bias = nn.Parameter(torch.zeros(dim))  # b_item: added to template users
        self.se_proj = nn.Linear(dim, dim, bias=False)  # W of the SE loss (eq. 6)
        with torch.no_grad():
            self.se_proj.weight.copy_(torch.eye(dim) + 0.01 * torch.randn(dim, dim, generator=gen))
        self.register_buffer("user_templates", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("item_templates", torch.zeros(num_items, dtype=torch.bool))
        self.register_buffer("alpha", torch.tensor(alpha_at(self.config, 0)))
        self.prepared = False
        self.modalities: ModalityFeatures | None = None
        self.adjacency_cache = AdjacencyCache()
        self.template_cache: IdentityCache[TemplateEdges] = IdentityCache()
        self.neighbour_cache: IdentityCache[Neighbourhoods] = IdentityCache()
        if device is not None:
            self.to(device)

    # -- setup -------------------------------------------------------------------------------
    def prepare(self, graph: Graph) -> None:
        """Choose the templates from the training graph (done by the first ``represent`` if
        the pipeline does not call it)."""
        users, items = select_templates(
            graph.edge_index,
            self.num_users,
            self.num_items,
            self.config.template_ranking,
            self.config.template_ratio,
            seed=self.seed,
        )
        self.user_templates.copy_(users)
        self.item_templates.copy_(items)
        self.template_cache.clear()
        self.prepared = True

    def set_modalities(self, modalities: ModalityFeatures) -> None:
        """Item text/image features for the modality aggregation (dropped per config)."""
        cfg = self.config
        device = self.user_emb.device
        self.modalities = ModalityFeatures(
            text=modalities.text.to(device) if cfg.text and modalities.text is not None else None,
            image=modalities.image.to(device)
            if cfg.image and modalities.image is not None
            else None,
        )
        self.neighbour_cache.clear()

    @property
    def aggregates(self) -> bool:
        """Whether modality aggregation is on (enabled and some modality available)."""
        return self.config.multimodal and self.modalities is not None and not self.modalities.empty

    def set_epoch(self, epoch: int) -> None:
        """Anneal alpha for ``epoch`` (0-based)."""
        self.alpha.fill_(alpha_at(self.config, epoch))

    # -- eq. 1 -------------------------------------------------------------------------------
    def template_representations(self, edge_index: Tensor) -> Tensor:
        """``[U + I, D]``: users from template items, items from template users (eq. 1)."""
        edges = self.template_cache.get(
            edge_index,
            "templates",
            lambda: template_edges(
                edge_index,
                self.user_templates,
                self.item_templates,
                self.num_users,
                self.num_items,
            ),
        )
        matrix, matrix_t = edges.matrix, edges.matrix_t
        if self.training and self.config.dropout > 0:  # edge dropout, rescaled (INMO)
            nnz = edges.order_t.numel()
            keep = torch.rand(nnz, device=edges.count.device) >= self.config.dropout
            matrix, matrix_t = edges.with_values(keep.float() / (1.0 - self.config.dropout))
        # source rows carry e + the destination side's bias: users sum (e_i + b_user)
        source = torch.cat(
            [self.user_emb + self.item_bias, self.item_emb + self.user_bias]
        )  # [N, D]
        summed = sparse_matmul(matrix, matrix_t, source)  # [N, D]
        norm = (edges.count + 1.0).pow(-self.alpha)  # [N]
        return summed * norm[:, None]

    # -- GraphBackbone -----------------------------------------------------------------------
    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if not self.prepared:
            self.prepare(graph)
        edge_index = graph.edge_index
        x = self.template_representations(edge_index)  # [U + I, D]
        if self.aggregates:
            assert self.modalities is not None
            modalities = self.modalities
            hoods = self.neighbour_cache.get(
                edge_index,
                "neighbours",
                lambda: neighbourhoods(
                    modalities,
                    edge_index,
                    self.num_users,
                    self.num_items,
                    self.config.k,
                    self.config.w,
                ),
            )
            u, i = x[: self.num_users], x[self.num_users :]
            x = torch.cat(
                [
                    aggregate(u, hoods.users, hoods.user_receives),
                    aggregate(i, hoods.items, hoods.item_receives),
                ]
            )
        return propagate(
            edge_index,
            x[: self.num_users],
            x[self.num_users :],
            self.config.num_layers,
            cache=self.adjacency_cache,
        )

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``beta * L_SE`` (eq. 6) over a batch: users [B]; items [B, 2] (positive, negative)
        or [B] positives (negatives then drawn uniformly from the template items)."""
        if self.config.se_weight == 0 or users.numel() == 0:
            return self.user_emb.new_zeros(())
        if items.dim() == 1:
            pool = torch.nonzero(self.item_templates).flatten()
            neg = pool[torch.randint(pool.numel(), (items.numel(),), device=pool.device)]
            items = torch.stack([items, neg], dim=1)
        pos, neg = items[:, 0], items[:, 1]
        keep = self.user_templates[users] & self.item_templates[pos] & self.item_templates[neg]
        if not bool(keep.any()):
            return self.user_emb.new_zeros(())
        e_u = self.user_emb[users[keep]]  # [B', D]
        w_pos = self.se_proj(self.item_emb[pos[keep]])  # [B', D]
        w_neg = self.se_proj(self.item_emb[neg[keep]])  # [B', D]
        margin = (e_u * w_pos).sum(1) - (e_u * w_neg).sum(1)
        return self.config.se_weight * F.softplus(-margin).mean()


def _build(config: INMOConfig, ctx: BuildContext) -> INMOBackbone:
    return INMOBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component = Component(
    "inmo",
    "backbones",
    INMOConfig,
    _build,
    "INMO templates (inductive) + MICRec modality aggregation + LightGCN",
)
