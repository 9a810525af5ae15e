"""IDCF (Wu et al., ICML 2021, "Towards Open-World Recommendation: An Inductive Model-based
Collaborative Filtering Approach"): matrix factorisation for key users plus a relation
model that computes embeddings of new users from the key users' embeddings (a MICRec
baseline, inductive for users).

The two models (the paper's method; formulas as the authors' code qitianwu/IDCF computes
them: ``IRMC_NN_Model``, ``RelationGAT``, ``train-*.py``):

1. **Matrix factorisation** over the seen users: free embeddings ``p_u`` (users) and ``q_i``
   (items), score ``p_u^T q_i``; the key users' embeddings are the "meta latents". Key users
   are the ``key_ratio`` fraction of the seen users with the most distinct training items
   (the authors split by an interaction-count threshold); the default 1.0 makes every seen
   user a key user, as the authors' extrapolation setting trains on key users.
2. **Relation model** (multi-head attention from a query user to the key users): a query
   user's initial vector is the mean of the embeddings of the items it interacted with,
   ``d_u = |N_u|^-1 sum_{i in N_u} q_i``; head h attends over the key users k with
   ``a^h_uk = softmax_k((W_q^h d_u)^T (W_k^h p_k))`` and aggregates ``sum_k a^h_uk W_v^h p_k``;
   the heads are concatenated and mapped back, ``p~_u = W_o [head_1 || ... || head_H]``.

Objective. MF is trained with BPR (the training step's BPR on ``represent``'s dot
products) plus ``reg_weight`` L2 on the batch's embeddings. The relation model is trained as
in the paper's extrapolation setting (new users, unseen in training; the authors'
``EXTRA`` mode): on the seen users of the batch, with the recommendation loss on the
estimated embedding, BPR ``-ln sigma(p~_u^T q_i - p~_u^T q_j)``, plus the similarity
regulariser between estimated and transductive embeddings, the contrastive
``L_con = -mean_u [p~_u^T p_u - log sum_v exp(p~_u^T p_v)]`` over the batch's distinct
users, weighted by ``sim_weight``. In this loss p and q are constants (stop-gradient), so it
trains only the relation model, as the paper's second stage does with frozen meta latents.

Two stages in one shared loop (the design): both losses are summed from
``relation_start`` on (default epoch 0), with the stop-gradient keeping them apart: MF's
parameters receive only MF's gradients (exactly its own stage-1 training) and the relation
model, at every epoch, fits the current MF embeddings (stage 2). The paper trains the
stages one after the other with MF frozen in stage 2; inside the shared loop that schedule
would break early stopping: validation ranks seen users, whose MF embeddings a frozen
stage 2 does not change, so the best epoch would always lie in stage 1 and the restored
state would hold an untrained relation model. ``set_epoch`` switches the relation loss on at
``relation_start`` (a later start pretrains MF first); before it, unseen users get the mean
seen embedding.

Inference. Seen users keep their MF embeddings; a user unseen in training gets ``p~_u``
from its new edges (E_new) by attention over all key users, without retraining; a user
with no edge at all gets the mean seen embedding. IDCF is inductive for users only: items
unseen in training get the mean seen item embedding (documented choice, as LightGCN here).

Implicit feedback (MICRec's setting): the authors' implicit runs (Amazon) use pointwise BCE
with one sampled negative per positive, summed over the batch; here BPR (a batch mean) is
the ranking loss of both models, and the contrastive weight keeps their ratio: their code
adds ``10 * mean L_con`` to a sum over 256 positives (and as many negatives), so
``sim_weight = 10 / 256 ~ 0.04``.

Defaults follow the authors' code: 4 heads, 500 key users sampled per training step, Xavier
init of the embeddings and the attention weights. Deviations, each for the shared loop or
vectorisation: one key sample per step and head shared by the batch (theirs per query
user); a user never attends to itself while training (otherwise it could copy its own
embedding into the contrastive target); separate value maps ``W_v^h`` (the authors' code
uses ``W_v^h W_k^h``, the same function class); ``d_u`` averages all of a user's items
(theirs at most 100 sampled); the base model is plain MF (their IDCF-NN adds an MLP and
biases, IDCF-GC uses GC-MC), so the pipeline's dot scorer ranks; the L2 term is the usual
squared norm on the batch (theirs ``0.1 * sum of row norms`` of the whole tables).
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import IdentityCache, csr_from_edges
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import fill_unseen, seen_mask
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, positive
from cdr.interfaces import Graph


@attrs.frozen
class IDCFConfig(BackboneConfig):
    """num_heads: H (authors 4); key_ratio: fraction of the seen users, by training degree,
    that are key users; key_sample: key users sampled per training step (authors 500; 0 =
    all); sim_weight: weight of the contrastive similarity regulariser (authors' 10 over a
    summed loss of 256 positives, ~0.04 for a mean); reg_weight: L2 on the batch's MF
    embeddings; relation_start: first epoch that trains the relation model; chunk: query
    users per attention block at inference."""

    kind: str = "idcf"
    num_heads: int = attrs.field(default=4, validator=positive)
    key_ratio: float = attrs.field(default=1.0, validator=in_range(0.0, 1.0, low_open=True))
    key_sample: int = attrs.field(default=500, validator=non_negative)
    sim_weight: float = attrs.field(default=0.04, validator=non_negative)
    reg_weight: float = attrs.field(default=1e-4, validator=non_negative)
    relation_start: int = attrs.field(default=0, validator=non_negative)
    chunk: int = attrs.field(default=1024, validator=positive)


def history_matrix(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    """CSR ``[U, I]`` with ``1 / |N_u|`` at each (deduplicated) edge: ``R @ q`` is the mean
    embedding of each user's items (zero rows for users without edges)."""
    key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())
    users, items = key // num_items, key % num_items
    degree = torch.bincount(users, minlength=num_users).to(torch.float32)  # [U]
    values = degree[users].reciprocal()  # [E']
    return csr_from_edges(users, items, values, (num_users, num_items))


class RelationModel(nn.Module):
    """Multi-head attention from query vectors [Q, D] to key embeddings [K, D] -> [Q, D]."""

    def __init__(self, dim: int, num_heads: int, generator: torch.Generator) -> None:
        super().__init__()
        self.num_heads = num_heads

        def heads() -> nn.Parameter:  # H stacked [D, D] maps, Xavier (as nn.Linear's weight)
            weight = torch.empty(num_heads, dim, dim)
            for h in range(num_heads):
                nn.init.xavier_normal_(weight[h], generator=generator)
            return nn.Parameter(weight)

        self.w_query, self.w_key, self.w_value = heads(), heads(), heads()
        self.w_out = nn.Parameter(
            nn.init.xavier_normal_(torch.empty(num_heads * dim, dim), generator=generator)
        )

    def forward(self, queries: Tensor, keys: Tensor, exclude: Tensor | None = None) -> Tensor:
        """queries [Q, D] (the users' d_u), keys [K, D] (key users' p_k); ``exclude``: [Q, K]
        bool, pairs that may not attend (a user to itself). Returns p~ [Q, D]."""
        q = torch.einsum("qd,hde->hqe", queries, self.w_query)  # [H, Q, D]
        k = torch.einsum("kd,hde->hke", keys, self.w_key)  # [H, K, D]
        v = torch.einsum("kd,hde->hke", keys, self.w_value)  # [H, K, D]
        logits = q @ k.transpose(1, 2)  # [H, Q, K]
        if exclude is not None:
            logits = logits.masked_fill(exclude[None], torch.finfo(logits.dtype).min)
        heads = torch.softmax(logits, dim=2) @ v  # [H, Q, D]
        return heads.permute(1, 0, 2).reshape(queries.shape[0], -1) @ self.w_out  # [Q, D]


class IDCFBackbone(BackboneBase):
    """MF embeddings + the relation model; see the module docstring."""

    seen_users: Tensor  # [U] bool buffer
    seen_items: Tensor  # [I] bool buffer
    key_users: Tensor  # [U] bool buffer

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: IDCFConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = config or IDCFConfig()
        self.num_users, self.num_items = num_users, num_items
        gen = torch.Generator().manual_seed(seed)
        user = nn.init.xavier_uniform_(torch.empty(num_users, dim), generator=gen)
        item = nn.init.xavier_uniform_(torch.empty(num_items, dim), generator=gen)
        self.user_emb = nn.Parameter(user)  # p [U, D]
        self.item_emb = nn.Parameter(item)  # q [I, D]
        self.relation = RelationModel(dim, self.config.num_heads, gen)
        self.register_buffer("seen_users", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.zeros(num_items, dtype=torch.bool))
        self.register_buffer("key_users", torch.zeros(num_users, dtype=torch.bool))
        self.epoch = 0
        self.prepared = False
        self.histories: IdentityCache[Tensor] = IdentityCache()
        if device is not None:
            self.to(device)

    # -- setup -------------------------------------------------------------------------------
    def prepare(self, graph: Graph) -> None:
        """Seen users/items of the training graph; key users = the ``key_ratio`` seen users
        with the most distinct training items (ties broken by the lower id)."""
        users, items = graph.edge_index[0].long(), graph.edge_index[1].long()
        self.seen_users.copy_(seen_mask(users, self.num_users))
        self.seen_items.copy_(seen_mask(items, self.num_items))
        distinct = torch.unique(users * self.num_items + items) // self.num_items  # [E']
        degree = torch.bincount(distinct, minlength=self.num_users)  # [U] distinct items
        seen = int(self.seen_users.sum())
        count = max(1, math.ceil(self.config.key_ratio * seen)) if seen else 0
        order = torch.argsort(-degree.cpu(), stable=True)[:count].to(self.key_users.device)
        keys = torch.zeros_like(self.key_users)
        keys[order] = True
        self.key_users.copy_(keys)
        self.prepared = True

    def set_epoch(self, epoch: int) -> None:
        """The relation model is trained and used from ``relation_start`` on."""
        self.epoch = epoch

    @property
    def relation_active(self) -> bool:
        return self.epoch >= self.config.relation_start

    # -- the relation model ------------------------------------------------------------------
    def user_queries(self, graph: Graph, items: Tensor) -> Tensor:
        """``[U, D]``: d_u, the mean of ``items`` [I, D] over each user's edges in ``graph``."""
        history = self.histories.get(
            graph.edge_index,
            "history",
            lambda: history_matrix(graph.edge_index, self.num_users, self.num_items),
        )
        return history @ items

    def estimate(self, queries: Tensor) -> Tensor:
        """p~ [Q, D] for query vectors [Q, D] by attention over all key users, in blocks of
        ``chunk`` queries."""
        keys = self.user_emb[self.key_users]  # [K, D]
        blocks = [self.relation(block, keys) for block in torch.split(queries, self.config.chunk)]
        return torch.cat(blocks) if blocks else queries

    # -- GraphBackbone -----------------------------------------------------------------------
    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if not self.prepared:
            self.prepare(graph)
        users: Tensor = self.user_emb  # [U, D]
        items: Tensor = self.item_emb  # [I, D]
        if self.training:  # unseen nodes are isolated in training and in no loss
            return users, items
        items = fill_unseen(items, self.seen_items)
        users = fill_unseen(users, self.seen_users)
        has_edges = seen_mask(graph.edge_index[0], self.num_users)
        new = has_edges & ~self.seen_users  # [U] users represented from their new edges
        if self.relation_active and bool(new.any()) and bool(self.key_users.any()):
            index = torch.nonzero(new).flatten()
            estimated = self.estimate(self.user_queries(graph, items)[index])  # [Q, D]
            users = users.index_copy(0, index, estimated)
        return users, items

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``reg_weight`` L2 on the batch's MF embeddings, plus (from ``relation_start``) the
        relation model's loss: BPR with p~_u and ``sim_weight * L_con`` (see the module
        docstring). users [B]; items [B, 2] (positive, negative)."""
        cfg = self.config
        total = self.user_emb.new_zeros(())
        if users.numel() == 0:
            return total
        if cfg.reg_weight > 0:
            squares = self.user_emb[users].pow(2).sum() + self.item_emb[items].pow(2).sum()
            total = total + cfg.reg_weight * squares / users.numel()
        key_index = torch.nonzero(self.key_users).flatten()
        if not self.relation_active or key_index.numel() == 0:
            return total
        p, q = self.user_emb.detach(), self.item_emb.detach()  # meta latents: constants here
        if 0 < cfg.key_sample < key_index.numel():
            draw = torch.randint(key_index.numel(), (cfg.key_sample,))
            key_index = key_index[draw.to(key_index.device)]
        batch = torch.unique(users)  # [B'] distinct batch users
        queries = self.user_queries(graph, q)[batch]  # [B', D]
        exclude = batch[:, None] == key_index[None, :]  # [B', K]: no attention to oneself
        estimated = self.relation(queries, p[key_index], exclude)  # p~ [B', D]
        row = torch.searchsorted(batch, users)  # [B] each batch row's position in ``batch``
        user = estimated[row]  # [B, D]
        margin = (user * q[items[:, 0]]).sum(1) - (user * q[items[:, 1]]).sum(1)  # [B]
        rec = -F.logsigmoid(margin).mean()  # BPR with the estimated embeddings
        logits = estimated @ p[batch].T  # [B', B']: p~_u . p_v
        con = F.cross_entropy(logits, torch.arange(batch.numel(), device=logits.device))
        return total + rec + cfg.sim_weight * con


def _build(config: IDCFConfig, ctx: BuildContext) -> IDCFBackbone:
    return IDCFBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[IDCFConfig, IDCFBackbone] = Component(
    "idcf",
    "backbones",
    IDCFConfig,
    _build,
    "IDCF: MF for key users + attention relation model for new users (inductive users)",
)
