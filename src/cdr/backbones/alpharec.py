"""AlphaRec (Sheng et al., ICLR 2025, "Language Representations Can be What Recommenders
Need: Findings and Potentials"): no ID embeddings at all; language-model item
representations mapped by an MLP, propagated by LightGCN, trained with InfoNCE (a MICRec
baseline, inductive for items and users through their text). The paper's formulas are
written out below by name rather than by number (the numbering could not be checked
against the published version here); each was checked against the authors' code
(LehengTHU/AlphaRec ``models/General/AlphaRec.py``).

- Inputs: ``z_i`` [I, F], the item's language representation (here the
  features of the encoder ``text_encoder`` names, given through ``set_modalities``), and
  ``z_u``, the mean of ``z_i`` over the user's items in the graph at hand.
- Non-linear projection: ``e^(0) = W_2 LeakyReLU(W_1 z + b_1) + b_2``, one MLP shared by
  users and items.
- Graph convolution: LightGCN's ``E^(l+1) = D^-1/2 A D^-1/2 E^(l)`` and the mean of layers
  0..L (:func:`cdr.backbones.lightgcn.propagate`).
- Objective: InfoNCE with cosine similarity and temperature tau over the positive
  and |S_u| sampled negatives, ``L = -mean_(u,i) log exp(s(u,i)/tau) / (exp(s(u,i)/tau) +
  sum_(j in S_u) exp(s(u,j)/tau))``; ``represent`` returns L2-normalised vectors, so the
  dot scorer ranks by the same cosine (the authors' ``train_norm`` / ``pred_norm``).
  This is the whole loss (``traits.objective = "own"``: the training step adds no BPR);
  ``regularization`` computes it; there is no L2 term (the authors' Adam has no weight
  decay).

Defaults follow the authors' code and run commands (LehengTHU/AlphaRec: 2 layers, tau 0.15,
256 negatives, MLP hidden width half the input's, LeakyReLU slope 0.01; lr 5e-4 and batch
4096 are ``trainer`` settings). Deviations: the language model is the project's ``llm``
encoder (SmolLM2-135M) by default, not text-embedding-3-large (any registered encoder can be
named: ``plm`` for MiniLM); the negatives are the BPR batch's negative plus
``num_negatives - 1`` uniform draws from the training graph's items the user has no edge to
(:class:`NegativeSampler`, exact and vectorised; the authors draw the same distribution per
user in a Python sampler); a user's ``z_u`` is the mean over its items in the
graph given to ``represent`` (the training graph in training, training + new edges at
inference: an unseen user is represented from its revealed items, an unseen item from its
text); a user without any edge gets ``z_u = 0``.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import AdjacencyCache, IdentityCache
from cdr.backbones.aggregation import mean_of_items
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import propagate
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, positive
from cdr.errors import CompositionError
from cdr.interfaces import BackboneTraits, Graph, ModalityFeatures


@attrs.frozen
class AlphaRecConfig(BackboneConfig):
    """num_layers: L; temperature: tau; num_negatives: |S_u|, sampled per positive; hidden:
    the MLP's hidden width (0 = half the text features' width, the authors' setting);
    negative_slope: of the LeakyReLU; text_encoder: the registered encoder whose item
    features are z_i."""

    kind: str = "alpharec"
    num_layers: int = attrs.field(default=2, validator=in_range(0, 16))
    temperature: float = attrs.field(default=0.15, validator=positive)
    num_negatives: int = attrs.field(default=256, validator=in_range(1, 100_000))
    hidden: int = attrs.field(default=0, validator=in_range(0, 1_000_000))
    negative_slope: float = attrs.field(default=0.01, validator=non_negative)
    text_encoder: str = "llm"


def projection(in_dim: int, hidden: int, out_dim: int, slope: float, seed: int) -> nn.Sequential:
    """The projection MLP ``[N, in_dim] -> [N, out_dim]``, initialised as torch's Linear default
    (Kaiming-uniform weights, uniform biases) from a generator seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    first, second = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)
    with torch.no_grad():
        for linear in (first, second):
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=gen)
            bound = 1.0 / math.sqrt(linear.in_features)
            nn.init.uniform_(linear.bias, -bound, bound, generator=gen)
    mlp = nn.Sequential(first, nn.LeakyReLU(slope), second)
    return mlp


def negative_scores(users: Tensor, items: Tensor, neg: Tensor) -> Tensor:
    """``[B, n]``: ``users[b] . items[neg[b, k]]`` for users [B, D], items [I, D], neg [B, n].

    Gathered from the full ``[B, I]`` product when that is smaller than the ``[B, n, D]``
    gather (few items), else from the gathered item rows (its backward is a scatter of B n
    rows)."""
    if items.shape[0] <= neg.shape[1] * items.shape[1]:
        return (users @ items.T).gather(1, neg)
    return torch.einsum("bd,bnd->bn", users, items[neg])


def sampled_info_nce(s_pos: Tensor, s_neg: Tensor, temperature: float) -> Tensor:
    """The InfoNCE objective from cosines of the positives [B] and of the negatives [B, n]:
    ``mean_b(logsumexp([s_pos, s_neg] / tau) - s_pos / tau)``."""
    logits = torch.cat([s_pos[:, None], s_neg], dim=1) / temperature  # [B, 1 + n]
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


@attrs.frozen(eq=False)
class NegativeSampler:
    """Uniform draws from the items of a graph that a user has no edge to, exactly and
    without a loop over users.

    pool: [P] the graph's items, sorted; degree: [U] each user's distinct items; start: [U]
    where a user's block begins in ``keys``; keys: [E'] ``user * P + q_j``, with p_j the
    pool positions of the user's items (sorted) and ``q_j = p_j - j`` the number of
    non-positives before the j-th positive. The r-th non-positive (0-based) of a user sits at
    pool position ``r + #{j : q_j <= r}``.
    """

    pool: Tensor
    degree: Tensor
    start: Tensor
    keys: Tensor

    @classmethod
    def of(cls, edge_index: Tensor, num_users: int, num_items: int) -> NegativeSampler:
        key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())  # sorted
        users, items = key // num_items, key % num_items
        pool = torch.unique(items)  # [P]
        degree = torch.bincount(users, minlength=num_users)  # [U]
        start = torch.cumsum(degree, 0) - degree  # [U]
        rank = torch.arange(key.numel(), device=key.device) - start[users]  # j within a user
        q = torch.searchsorted(pool, items) - rank  # [E'], non-decreasing within a user
        return cls(pool, degree, start, users * pool.numel() + q)

    def sample(self, users: Tensor, n: int) -> Tensor:
        """[B, n] items none of which is an edge of its row's user (a user linked to every
        pool item gets uniform pool items: it has no negative)."""
        size = self.pool.numel()
        free = (size - self.degree[users]).clamp(min=0)  # [B] non-positives per user
        none = free == 0
        span = torch.where(none, size, free).to(torch.float64)[:, None]  # [B, 1]
        uniform = torch.rand(users.numel(), n, device=users.device, dtype=torch.float64)
        r = (uniform * span).long().clamp(max=size - 1)  # [B, n] rank among non-positives
        target = users[:, None] * size + r  # [B, n]
        before = torch.searchsorted(self.keys, target, right=True) - self.start[users, None]
        position = torch.where(none[:, None], r, r + before)
        return self.pool[position]


class AlphaRecBackbone(BackboneBase):
    """Text features -> MLP -> LightGCN -> L2-normalised users [U, D], items [I, D].

    The MLP is created by ``set_modalities`` (its input width is the text features'), which
    every pipeline calls before training because ``traits.text_encoder`` is set."""

    item_text: Tensor  # [I, F] non-persistent buffer (recomputed from the encoder)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: AlphaRecConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = config or AlphaRecConfig()
        self.traits = BackboneTraits(text_encoder=self.config.text_encoder, objective="own")
        self.num_users, self.num_items, self.dim, self.seed = num_users, num_items, dim, seed
        self.mlp: nn.Sequential | None = None
        self.text_width = 0  # F, the MLP's input width (0 until set_modalities)
        self.register_buffer("item_text", torch.zeros(num_items, 0), persistent=False)
        self.cache = AdjacencyCache()
        self.user_text: IdentityCache[Tensor] = IdentityCache()
        self.samplers: IdentityCache[NegativeSampler] = IdentityCache(capacity=2)
        self.last: tuple[Tensor, Tensor, Tensor] | None = None  # (edge_index, users, items)
        if device is not None:
            self.to(device)

    def set_modalities(self, modalities: ModalityFeatures) -> None:
        """Item text features [I, F] (z_i); builds the MLP on their width."""
        text = modalities.text
        if text is None:
            raise CompositionError(
                f"backbone alpharec: encoder {self.config.text_encoder!r} gave no item text "
                "features (AlphaRec has no ID embeddings)"
            )
        if text.dim() != 2 or text.shape[0] != self.num_items:
            raise CompositionError(
                f"backbone alpharec: text features of shape {list(text.shape)}, expected "
                f"[{self.num_items}, F] (one row per item)"
            )
        device = self.item_text.device
        self.item_text = text.detach().to(device=device, dtype=torch.float32)
        self.user_text.clear()
        width = text.shape[1]
        if self.mlp is None or self.text_width != width:
            hidden = self.config.hidden or max(1, width // 2)
            mlp = projection(width, hidden, self.dim, self.config.negative_slope, self.seed)
            self.mlp, self.text_width = mlp.to(device), width

    def _users_text(self, graph: Graph) -> Tensor:
        """z_u [U, F]: each user's mean item text in ``graph`` (cached per graph)."""
        return self.user_text.get(
            graph.edge_index,
            "z_u",
            lambda: mean_of_items(self.item_text, graph.edge_index, self.num_users),
        )

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if self.mlp is None:
            raise CompositionError(
                "backbone alpharec: no item text features were given (set_modalities); "
                f"it needs encoder {self.config.text_encoder!r}'s features"
            )
        z = torch.cat([self._users_text(graph), self.item_text])  # [U + I, F]
        e0 = self.mlp(z)  # non-linear projection: [U + I, D]
        users, items = propagate(
            graph.edge_index,
            e0[: self.num_users],
            e0[self.num_users :],
            self.config.num_layers,
            cache=self.cache,
        )  # graph convolution
        users, items = F.normalize(users, dim=1), F.normalize(items, dim=1)
        self.last = (graph.edge_index, users, items) if self.training else None
        return users, items

    def negatives(self, graph: Graph, users: Tensor, given: Tensor) -> Tensor:
        """[B, n]: the batch's negatives ``given`` [B, m] plus ``n - m`` uniform draws from
        ``graph``'s items that the user has no edge to."""
        extra = self.config.num_negatives - given.shape[1]
        if extra <= 0:
            return given[:, : self.config.num_negatives]
        sampler = self.samplers.get(
            graph.edge_index,
            "negatives",
            lambda: NegativeSampler.of(graph.edge_index, self.num_users, self.num_items),
        )
        return torch.cat([given, sampler.sample(users, extra)], dim=1)

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """The whole loss: InfoNCE of users [B] with items [B, 1 + m] (positive, then
        the batch's m negatives), topped up to ``num_negatives`` sampled negatives."""
        if users.numel() == 0:
            return self.item_text.new_zeros(())
        last, self.last = self.last, None  # this step's representations serve one loss
        if last is None or last[0] is not graph.edge_index:
            u_rep, i_rep = self.represent(graph)
            self.last = None
        else:
            u_rep, i_rep = last[1], last[2]
        items = items if items.dim() == 2 else items[:, None]
        neg = self.negatives(graph, users, items[:, 1:])  # [B, n]
        u = u_rep[users]  # [B, D]
        s_pos = (u * i_rep[items[:, 0]]).sum(1)  # [B]
        return sampled_info_nce(s_pos, negative_scores(u, i_rep, neg), self.config.temperature)


def _build(config: AlphaRecConfig, ctx: BuildContext) -> AlphaRecBackbone:
    return AlphaRecBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[AlphaRecConfig, AlphaRecBackbone] = Component(
    "alpharec",
    "backbones",
    AlphaRecConfig,
    _build,
    "AlphaRec: language-model item features -> MLP -> LightGCN, InfoNCE (inductive by text)",
)
