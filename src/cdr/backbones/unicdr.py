"""UniCDR (Cao, Li, Yu, Guo, Liu, Wang, WSDM 2023, "Towards Universal Cross-Domain
Recommendation", MICRec's reference [2]): domain-specific and domain-shared user
representations, each an aggregation of the user's interacted items around an ID embedding,
tied together by a contrastive regulariser (a MICRec cross-domain baseline).

The paper's text is not available here; the method is read from its description as
summarised below and from the authors' code (github.com/cjx96/UniCDR, ``model/UniCDR.py``,
``model/trainer.py``, ``utils/data.py``, the ``dual-user-intra`` scenario: two domains
sharing users), which this module follows; no code is copied.

- Embeddings: per domain Z, user embeddings ``u^Z`` [U, D] and item embeddings ``v^Z``
  [I, D]; one domain-shared user embedding ``u^S`` [U, D] for both domains.
- Interaction-aware aggregator ("BehaviorAggregator"):
  ``agg(u, N) = lambda_a u + (1 - lambda_a) W_agg pool({v_i : i in N})`` with ``pool`` the
  mean (``mean``) or an attention of the user over its items (``user_attention``:
  ``a_i = softmax_i(<tanh(W_att v_i + b), u>)``, dropout on ``a``); one aggregator per
  domain for the specific part, one shared aggregator for the shared part.
- Domain-specific representation: ``s_u^Z = agg^Z(u^Z_u, N^Z_u)`` over the user's items in
  domain Z; domain-shared: ``h_u^Z = agg^S(u^S_u, N_u)``. In training, interaction masking
  keeps a random ``min(maxlen, floor(|N| (1 - mask_rate)))`` of a user's items and removes
  the target item from the specific context; domain masking builds the shared context from
  the *other* domain's items only (so ``u^S`` has to carry what transfers). At inference
  the shared context is the user's items of both domains.
- Score (the code's "Eq. 13, same weight"): ``<s_u^Z + h_u^Z, v_i^Z>``; dropout 0.3 on
  ``s``, ``h`` and the item vectors in training.
- Contrastive information regulariser: a bilinear discriminator per domain tells a user's
  own (``s_u``, ``h_u``) pair from a shuffled one (``s_u'``, ``h_u``), ``u'`` the batch
  rolled by a random offset: ``L_reg = BCE(D(s_u, h_u), 1) + BCE(D(s_u', h_u), 0)``.
- Objective: ``L = lambda (BCE(<u, v_pos>, 1) + BCE(<u, v_neg>, 0)) + (1 - lambda) L_reg``
  with ``num_negatives`` sampled negatives per positive, summed over the two domains by
  the training step. It is the whole loss (``traits.objective = "own"``); the ranking is
  the dot product of ``represent``'s vectors (the pipeline's dot scorer).

Defaults are the authors' (``train_rec.py``): lambda_a 0.5, lambda (``lambda_loss``) 0.4,
mask rate 0.1, maxlen 10, 10 negatives, dropout 0.3, ``mean`` aggregator (their default;
their sport_cloth command uses ``user_attention``), N(0, 1) embeddings (``nn.Embedding``'s
default). The trainer's settings play the rest: the authors use Adam, lr 1e-3, weight
decay 1e-5 (``trainer.weight_decay``), batch 1024 and dim 128.

N(0, 1) rows learn slowly under short budgets: on the planted data of the learning test
(dim 32, 12 epochs) NDCG@20 is 0.20 with them and 0.43 with ``init_std`` 0.1 (popularity
0.19).

Compared against the authors' code: their ``UniCDR`` class and their trainer's loss, fed
the same inductive split of the synthetic data (1000 users, 300 + 300 items) in their
padded-sequence format, same budget (30 epochs of one pass, batch 256, dim 32, Adam lr
0.01, weight decay 1e-5, best validation epoch) and scored by the same evaluation:
target NDCG@20 over 3 seeds 0.101 +- 0.004 here vs 0.085 +- 0.007 theirs, validation
0.100 vs 0.102; the test gap is this module's mean row for unseen items (their untrained
random rows compete in the full ranking; with raw rows here: 0.087 on seed 0, theirs
0.083). Popularity scores 0.129 there: at this budget neither implementation passes it;
at the authors' lr 1e-3 both stay near 0.03 (0.029 here, 0.026 theirs, seed 0).

Cross-domain wiring: both domains' backbones are built by the pipeline; ``pair`` (called as
``target.pair(source)``) makes the target use the source's shared module (``u^S``, the
shared aggregator), registered in the source only, so it is one set of parameters in the
model, in ``state_dict`` and in checkpoints; each side also reads the other's item table and
training graph for the shared context.

Deviations, each with its reason:

- Inductive protocol: users and items without training edges have untrained ID rows, so at
  inference they take the mean of the seen rows (``u^Z``, ``u^S``, ``v^Z``, as LightGCN
  here); an unseen user is then represented through the aggregation of the items it is
  revealed with (E_new), as the paper's cold-start users are through their histories.
  UniCDR has no content features, so unseen *items* stay at the mean item vector.
- At inference the shared context uses the other domain's *training* items: a backbone's
  ``represent`` is given its own domain's graph only, so the other domain's E_new edges are
  not visible to it (an unseen user's shared context is its own domain's E_new items).
- Contexts are not truncated at inference (the authors sample at most 50 items per domain):
  ``represent`` is deterministic and uses every item of the graph it is given. In training
  the sample is redrawn at every step (the authors' ``--static_sample`` caches the first
  epoch's draws).
- Negatives: the batch's BPR negative plus ``num_negatives - 1`` uniform draws from the
  items seen in training, redrawn a few vectorised rounds where they are the user's
  training positives, and any clash left is dropped from the loss (the authors reject per
  item in a Python loop).
- ``user_attention``'s softmax runs over the user's real items only: the authors' masked
  softmax adds ``exp(0)`` per padding slot to the denominator (its weights depend on the
  padding length, 10 in training and 50 at test).
- The item-similarity aggregator (EASE weights, a dense I x I inverse) and the authors'
  learning-rate decay on plateaus are not implemented; the paper's other scenarios
  (multi-domain, item overlap) do not arise with two domains sharing users.
"""

from __future__ import annotations

import math
from typing import cast

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import IdentityCache, csr_from_edges, sparse_matmul
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import fill_unseen, seen_mask
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, one_of, positive
from cdr.errors import CompositionError
from cdr.interfaces import BackboneTraits, Graph, GraphBackbone

AGGREGATORS = ("mean", "user_attention")


@attrs.frozen
class UniCDRConfig(BackboneConfig):
    """aggregator: ``mean`` or ``user_attention``; lambda_a: weight of the ID embedding in an
    aggregated representation; lambda_loss: weight of the recommendation loss (1 - it: the
    contrastive regulariser); mask_rate: share of a user's items masked in training;
    max_context: at most this many items per user and domain in a training context
    (``maxlen``); num_negatives: sampled negatives per positive; dropout: on the user parts
    and item vectors (and the attention weights) in training; init_std: N(0, std) embeddings.
    """

    kind: str = "unicdr"
    aggregator: str = attrs.field(default="mean", validator=one_of(AGGREGATORS))
    lambda_a: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0))
    lambda_loss: float = attrs.field(default=0.4, validator=in_range(0.0, 1.0))
    mask_rate: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))
    max_context: int = attrs.field(default=10, validator=positive)
    num_negatives: int = attrs.field(default=10, validator=in_range(1, 100_000))
    dropout: float = attrs.field(default=0.3, validator=in_range(0.0, 1.0, high_open=True))
    init_std: float = attrs.field(default=1.0, validator=positive)


@attrs.frozen(eq=False)
class UserIndex:
    """A graph's edges grouped by user: ``rowptr`` [U + 1] and ``items`` [E] (user-major),
    ``keys`` [E] the sorted ``user * I + item`` (membership by binary search)."""

    rowptr: Tensor
    items: Tensor
    keys: Tensor
    num_items: int

    @classmethod
    def of(cls, edge_index: Tensor, num_users: int, num_items: int) -> UserIndex:
        users, items = edge_index[0].long(), edge_index[1].long()
        keys, order = torch.sort(users * num_items + items)
        rowptr = torch.zeros(num_users + 1, dtype=torch.long, device=users.device)
        rowptr[1:] = torch.cumsum(torch.bincount(users, minlength=num_users), 0)
        return cls(rowptr, items[order], keys, num_items)

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Bool, the shape of ``items``: whether (user, item) is an edge (users broadcast)."""
        if self.keys.numel() == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        key = users * self.num_items + items
        at = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        return self.keys[at] == key


@attrs.frozen(eq=False)
class Incidence:
    """A graph's user x item incidence ``R`` [U, I] (CSR, one per edge) with its transpose
    [I, U] and the users' degrees [U]: ``R @ V`` sums each user's item vectors."""

    matrix: Tensor
    transpose: Tensor
    degree: Tensor

    @classmethod
    def of(cls, edge_index: Tensor, num_users: int, num_items: int) -> Incidence:
        users, items = edge_index[0].long(), edge_index[1].long()
        ones = torch.ones(users.numel(), device=users.device)
        return cls(
            csr_from_edges(users, items, ones, (num_users, num_items)),
            csr_from_edges(items, users, ones, (num_items, num_users)),
            torch.bincount(users, minlength=num_users).to(torch.float32),
        )

    def sums(self, values: Tensor) -> Tensor:
        """``[U, D]``: each user's sum of its items' rows of ``values`` [I, D]."""
        return sparse_matmul(self.matrix, self.transpose, values)


def sample_context(
    index: UserIndex,
    users: Tensor,
    max_context: int,
    mask_rate: float,
    exclude: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Interaction masking for a batch of users [B]: ``(rows [M], items [M])``, for each
    user ``b`` a uniformly random ``min(max_context, floor(n_b (1 - mask_rate)))`` of its
    ``n_b`` items, minus ``exclude[b]`` (its target item) where drawn. Global RNG."""
    start = index.rowptr[users]  # [B]
    degree = index.rowptr[users + 1] - start  # [B]
    total = int(degree.sum())
    device = users.device
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    rows = torch.repeat_interleave(torch.arange(users.numel(), device=device), degree)  # [T]
    first = torch.cumsum(degree, 0) - degree  # [B]: where each user's block starts in T
    offset = torch.arange(total, device=device) - first[rows]  # [T] position in the block
    items = index.items[start[rows] + offset]  # [T]
    keep = torch.floor(degree.double() * (1.0 - mask_rate)).clamp(max=max_context)  # [B]
    # a random order inside each block: shuffle, then stably regroup by user
    order = torch.argsort(torch.rand(total, device=device))
    order = order[torch.argsort(rows[order], stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(total, device=device) - first[rows[order]]
    chosen = rank < keep[rows]
    if exclude is not None:
        chosen &= items != exclude[rows]
    return rows[chosen], items[chosen]


def _uniform_(tensor: Tensor, bound: float, gen: torch.Generator) -> None:
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=gen)


def seeded_linear(in_dim: int, out_dim: int, gen: torch.Generator, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` with torch's default init (Kaiming-uniform, a = sqrt 5) drawn from
    ``gen`` instead of the global RNG."""
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    if layer.bias is not None:
        _uniform_(layer.bias, 1.0 / math.sqrt(in_dim), gen)
    return layer


def seeded_bilinear(dim: int, gen: torch.Generator) -> nn.Bilinear:
    """``nn.Bilinear(dim, dim, 1)`` with torch's default init U(+-1/sqrt dim) from ``gen``."""
    layer = nn.Bilinear(dim, dim, 1)
    _uniform_(layer.weight, 1.0 / math.sqrt(dim), gen)
    _uniform_(layer.bias, 1.0 / math.sqrt(dim), gen)
    return layer


class Aggregator(nn.Module):
    """``lambda_a ids + (1 - lambda_a) W_agg pool(items)`` for N users from M (row, item
    vector) pairs. ``kind``: ``mean`` or ``user_attention`` (W_att + tanh keys, softmax per
    user, dropout on the weights); ``project=False`` leaves out W_agg (PPA's mix-encoder)."""

    def __init__(
        self,
        dim: int,
        kind: str,
        lambda_a: float,
        attention_dropout: float,
        gen: torch.Generator,
        *,
        project: bool = True,
    ) -> None:
        super().__init__()
        if kind not in AGGREGATORS:
            raise ValueError(f"aggregator: {kind!r} is not one of {AGGREGATORS}")
        self.kind, self.lambda_a, self.attention_dropout = kind, lambda_a, attention_dropout
        self.project = seeded_linear(dim, dim, gen, bias=False) if project else None
        self.attention = seeded_linear(dim, dim, gen) if kind == "user_attention" else None

    def pool(self, ids: Tensor, rows: Tensor, values: Tensor, dropout: bool = False) -> Tensor:
        """``[N, D]``: each row's mean / attention-weighted sum of its ``values`` [M, D]
        (``rows`` [M] in 0..N-1); a row without values pools to 0."""
        n = ids.shape[0]
        if self.attention is None:
            total = values.new_zeros(n, values.shape[1]).index_add_(0, rows, values)
            count = torch.bincount(rows, minlength=n).to(values.dtype)  # [N]
            return total / (count[:, None] + 1e-12)
        keys = torch.tanh(self.attention(values))  # [M, D]
        logits = (keys * ids[rows]).sum(1)  # [M]
        top = logits.new_full((n,), -math.inf).scatter_reduce(0, rows, logits, "amax")
        weight = torch.exp(logits - top[rows].detach())  # [M]
        norm = weight.new_zeros(n).index_add_(0, rows, weight)  # [N]
        weight = weight / norm[rows]
        if dropout and self.attention_dropout > 0:
            weight = F.dropout(weight, self.attention_dropout, training=True)
        return values.new_zeros(n, values.shape[1]).index_add_(0, rows, weight[:, None] * values)

    def combine(self, ids: Tensor, pooled: Tensor) -> Tensor:
        """``lambda_a ids + (1 - lambda_a) W_agg pooled`` for [N, D] each."""
        if self.project is not None:
            pooled = self.project(pooled)
        return self.lambda_a * ids + (1.0 - self.lambda_a) * pooled

    def forward(self, ids: Tensor, rows: Tensor, values: Tensor, dropout: bool = False) -> Tensor:
        return self.combine(ids, self.pool(ids, rows, values, dropout))


class SharedUsers(nn.Module):
    """The domain-shared part: user embeddings ``u^S`` [U, D] and the shared aggregator."""

    def __init__(self, user_emb: Tensor, aggregator: Aggregator) -> None:
        super().__init__()
        self.user_emb = nn.Parameter(user_emb)
        self.aggregator = aggregator


class UniCDRBackbone(BackboneBase):
    """One domain's UniCDR: specific user / item embeddings, aggregators, a discriminator;
    the shared users are its own until ``pair`` hands it the other domain's. See the module
    docstring. ``critic`` replaces the bilinear discriminator (PPA's prototype decoder);
    ``project_pooled=False`` leaves W_agg out of both aggregators."""

    name = "unicdr"
    seen_users: Tensor  # [U] bool buffer
    seen_items: Tensor  # [I] bool buffer

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: UniCDRConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
        critic: nn.Module | None = None,
        project_pooled: bool = True,
    ) -> None:
        super().__init__()
        cfg = self.config = config or UniCDRConfig()
        self.traits = BackboneTraits(objective="own")
        self.num_users, self.num_items, self.dim = num_users, num_items, dim
        gen = torch.Generator().manual_seed(seed)

        def aggregator() -> Aggregator:
            return Aggregator(
                dim, cfg.aggregator, cfg.lambda_a, cfg.dropout, gen, project=project_pooled
            )

        self.user_emb = nn.Parameter(torch.randn(num_users, dim, generator=gen) * cfg.init_std)
        self.item_emb = nn.Parameter(torch.randn(num_items, dim, generator=gen) * cfg.init_std)
        self.aggregator = aggregator()
        shared = torch.randn(num_users, dim, generator=gen) * cfg.init_std
        self.shared: SharedUsers | None = SharedUsers(shared, aggregator())
        self.critic = critic if critic is not None else seeded_bilinear(dim, gen)
        self.register_buffer("seen_users", torch.zeros(num_users, dtype=torch.bool))
        self.register_buffer("seen_items", torch.zeros(num_items, dtype=torch.bool))
        # the other domain's backbone, in a list so that nn.Module does not register it
        self.partners: list[UniCDRBackbone] = []
        self.train_edges: Tensor | None = None  # [2, E] this domain's training graph
        self.indexes: IdentityCache[UserIndex] = IdentityCache()
        self.incidences: IdentityCache[Incidence] = IdentityCache()
        self.prepared = False
        if device is not None:
            self.to(device)

    # -- wiring ---------------------------------------------------------------------------

    def pair(self, other: GraphBackbone) -> None:
        """Use ``other``'s shared users (registered there only) and read its items."""
        if not isinstance(other, UniCDRBackbone) or type(other) is not type(self) or other is self:
            raise CompositionError(
                f"backbone {self.name}: pairs only with another domain's {self.name} "
                f"backbone, not {type(other).__name__}"
            )
        if other.shared is None or self.partners or other.partners:
            raise CompositionError(f"backbone {self.name}: these backbones are already paired")
        if (other.dim, other.num_users) != (self.dim, self.num_users):
            raise CompositionError(
                f"backbone {self.name}: cannot share users of dim {other.dim} x "
                f"{other.num_users} users with dim {self.dim} x {self.num_users}"
            )
        self.shared = None
        self.partners[:] = [other]
        other.partners[:] = [self]

    @property
    def partner(self) -> UniCDRBackbone | None:
        return self.partners[0] if self.partners else None

    @property
    def shared_users(self) -> SharedUsers:
        """The domain-shared module: this backbone's, or its partner's once paired."""
        if self.shared is not None:
            return self.shared
        return cast(SharedUsers, self.partners[0].shared)  # pair() checked it exists

    def prepare(self, graph: Graph) -> None:
        """Remember the training graph and its seen users and items."""
        self.seen_users.copy_(seen_mask(graph.edge_index[0], self.num_users))
        self.seen_items.copy_(seen_mask(graph.edge_index[1], self.num_items))
        self.train_edges = graph.edge_index
        self.prepared = True

    def incidence(self, edge_index: Tensor) -> Incidence:
        """The user x item incidence of a graph's edges (cached per edge tensor)."""
        return self.incidences.get(
            edge_index, "R", lambda: Incidence.of(edge_index, self.num_users, self.num_items)
        )

    def index(self, edge_index: Tensor) -> UserIndex:
        """The per-user index of a graph's edges (cached per edge tensor)."""
        return self.indexes.get(
            edge_index, "users", lambda: UserIndex.of(edge_index, self.num_users, self.num_items)
        )

    # -- representations ------------------------------------------------------------------

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """``(s + h [U, D], v [I, D])`` over every item of the users in ``graph`` (specific)
        and of both domains (shared: ``graph`` + the partner's training graph)."""
        if not self.prepared:
            self.prepare(graph)
        fill = not self.training  # untrained rows of unseen nodes -> the seen rows' mean
        items: Tensor = self.item_emb  # [I, D]
        ids: Tensor = self.user_emb  # [U, D]
        if fill:
            items, ids = fill_unseen(items, self.seen_items), fill_unseen(ids, self.seen_users)
        shared_users = self.shared_users
        shared_ids: Tensor = shared_users.user_emb  # [U, D]
        partner = self.partner
        other = partner.train_edges if partner is not None else None
        if fill:
            seen_any = self.seen_users | partner.seen_users if partner else self.seen_users
            shared_ids = fill_unseen(shared_ids, seen_any)
        if self.aggregator.attention is None:  # mean: sparse products, nothing per edge
            own = self.incidence(graph.edge_index)
            total, count = own.sums(items), own.degree  # [U, D], [U]
            specific = self.aggregator.combine(ids, total / (count[:, None] + 1e-12))
            if partner is not None and other is not None:
                theirs = partner.incidence(other)
                total, count = total + theirs.sums(partner.item_emb), count + theirs.degree
            shared_pooled = total / (count[:, None] + 1e-12)
            shared = shared_users.aggregator.combine(shared_ids, shared_pooled)
            return specific + shared, items
        rows, values = graph.edge_index[0], items[graph.edge_index[1]]  # [E], [E, D]
        specific = self.aggregator(ids, rows, values)  # [U, D]
        if partner is not None and other is not None:
            rows = torch.cat([rows, other[0]])
            values = torch.cat([values, partner.item_emb[other[1]]])
        shared = shared_users.aggregator(shared_ids, rows, values)  # [U, D]
        return specific + shared, items

    def batch_users(self, graph: Graph, users: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Training-time ``(s [B, D], h [B, D])`` for a batch (after dropout): interaction
        masking, the target item out of the specific context, domain masking for h."""
        cfg = self.config
        rows, ctx = sample_context(
            self.index(graph.edge_index), users, cfg.max_context, cfg.mask_rate, exclude=pos
        )
        drop = self.training
        specific = self.aggregator(self.user_emb[users], rows, self.item_emb[ctx], dropout=drop)
        shared_users = self.shared_users
        partner = self.partner
        if partner is not None and partner.train_edges is not None:
            index = partner.index(partner.train_edges)
            rows, ctx = sample_context(index, users, cfg.max_context, cfg.mask_rate)
            values = partner.item_emb[ctx]
        else:  # no other domain: an empty shared context
            rows = users.new_zeros(0)
            values = self.item_emb.new_zeros(0, self.dim)
        shared = shared_users.aggregator(shared_users.user_emb[users], rows, values, dropout=drop)
        return (
            F.dropout(specific, cfg.dropout, training=drop),
            F.dropout(shared, cfg.dropout, training=drop),
        )

    # -- loss -----------------------------------------------------------------------------

    def negatives(self, index: UserIndex, users: Tensor, given: Tensor) -> tuple[Tensor, Tensor]:
        """``(items [B, n], valid [B, n])``: the batch's negatives ``given`` [B, m] topped up
        with uniform draws from the seen items (redrawn where they are positives); ``valid``
        is False where a clash is left."""
        n = self.config.num_negatives
        extra = n - given.shape[1]
        if extra <= 0:
            neg = given[:, :n]
        else:
            pool = torch.nonzero(self.seen_items).flatten()  # [P]
            if pool.numel() == 0:
                pool = torch.arange(self.num_items, device=users.device)
            draw = pool[torch.randint(pool.numel(), (users.numel(), extra), device=pool.device)]
            for _ in range(5):
                clash = index.contains(users[:, None], draw)  # [B, extra]
                count = int(clash.sum())
                if count == 0:
                    break
                draw[clash] = pool[torch.randint(pool.numel(), (count,), device=pool.device)]
            neg = torch.cat([given, draw], dim=1)
        return neg, ~index.contains(users[:, None], neg)

    def shifted(self, size: int, device: torch.device) -> Tensor:
        """[size]: the batch rolled by a random offset in 1..size-1 (the code's
        ``random_label``), so no row is paired with itself."""
        offset = int(torch.randint(1, size, (1,)))
        return (torch.arange(size, device=device) + offset) % size

    def contrastive(self, specific: Tensor, shared: Tensor) -> Tensor:
        """``(1 - lambda) L_reg``: the discriminator's BCE on own vs rolled pairs."""
        weight = 1.0 - self.config.lambda_loss
        if weight == 0 or specific.shape[0] < 2:
            return specific.new_zeros(())
        shift = self.shifted(specific.shape[0], specific.device)
        pos = self.critic(specific, shared).flatten()  # [B]
        neg = self.critic(specific[shift], shared).flatten()  # [B]
        reg = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        reg = reg + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        return weight * reg

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """The whole loss of a batch of users [B] with items [B, 1 + m] (positive, then the
        batch's negatives) on the training ``graph``: ``lambda L_rec + (1 - lambda) L_reg``."""
        if users.numel() == 0:
            return self.item_emb.new_zeros(())
        items = items if items.dim() == 2 else items[:, None]
        pos = items[:, 0]
        specific, shared = self.batch_users(graph, users, pos)
        user = specific + shared  # [B, D]
        neg, valid = self.negatives(self.index(graph.edge_index), users, items[:, 1:])
        p, drop = self.config.dropout, self.training
        pos_score = (user * F.dropout(self.item_emb[pos], p, drop)).sum(1)  # [B]
        neg_vectors = F.dropout(self.item_emb[neg], p, drop)  # [B, n, D]
        neg_score = torch.einsum("bd,bnd->bn", user, neg_vectors)  # [B, n]
        rec = F.binary_cross_entropy_with_logits(pos_score, torch.ones_like(pos_score))
        neg_bce = F.binary_cross_entropy_with_logits(
            neg_score, torch.zeros_like(neg_score), reduction="none"
        )
        rec = rec + (neg_bce * valid).sum() / valid.sum().clamp(min=1)
        return self.config.lambda_loss * rec + self.contrastive(specific, shared)


def _build(config: UniCDRConfig, ctx: BuildContext) -> UniCDRBackbone:
    return UniCDRBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[UniCDRConfig, UniCDRBackbone] = Component(
    "unicdr",
    "backbones",
    UniCDRConfig,
    _build,
    "UniCDR: domain-shared + domain-specific users aggregated from their items (cross-domain)",
)
