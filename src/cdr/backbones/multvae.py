"""Mult-VAE (Liang et al., WWW 2018, "Variational Autoencoders for Collaborative
Filtering"): a variational autoencoder over a user's item vector with a multinomial
likelihood, trained with a KL term annealed from 0 to beta (a MICRec baseline).

- Generative model (section 2.1, eqs. 1-2): ``z_u ~ N(0, I_K)``,
  ``pi(z_u) = softmax(f_theta(z_u))``, ``x_u ~ Mult(N_u, pi(z_u))``; the log-likelihood
  (eq. 2) is ``sum_i x_ui log pi_i(z_u)``.
- Inference model (section 2.2.1, amortised): ``q(z_u | x_u) = N(mu(x_u), diag
  sigma^2(x_u))`` from an MLP g_phi over the L2-normalised input with dropout (the
  authors' code: ``x / ||x||``, then dropout with keep probability 0.5, in training only).
- Objective (section 2.2: the ELBO with its KL term weighted by beta): per user
  ``-E_q[log p(x_u | z_u)] + beta KL(q(z_u | x_u) || N(0, I))``, one reparameterised
  sample ``z_u = mu + eps ⊙ sigma``, ``eps ~ N(0, I)``,
  ``KL = 1/2 sum_k (-log sigma_k^2 + sigma_k^2 + mu_k^2 - 1)``; averaged over the batch's
  users.
- KL annealing (section 2.2.2): ``beta = min(anneal_cap, step / total_anneal_steps)`` at
  the step-th update (0-based), the authors' ``update_count``; ``total_anneal_steps = 0``
  means ``beta = anneal_cap`` from the start.
- Architecture (the paper's experimental setup): ``[I -> 600 -> 200 -> 600 -> I]``, tanh
  between layers, no activation on mu / log sigma^2 or on the output logits; at inference
  ``z = mu``. Equation numbers are cited for eqs. 1-2 only; the rest by section.

As a backbone, ``traits.objective = "own"``: ``regularization(graph, users, items)`` is the
negative ELBO of the batch's distinct users' rows of the training ``graph`` (``items`` is
not read). Scoring is the pipeline's dot scorer: the decoder's last layer is linear, so with
``h(mu)`` its input (the last hidden layer at ``z = mu``) and ``W [I, H]``, ``b [I]`` its
weights, ``logits = h W^T + b = [h, 1] . [W, b]``; ``represent`` returns users
``[h(mu_u), 1]`` and items ``[W_i, b_i]``, so ranking by dot products is ranking by the
decoder's logits (and serving stored vectors works). Users are encoded from their row of the
graph ``represent`` is given, so the model is inductive for users: at test an unseen user is
encoded from its revealed edges E_new, a seen one from its training + new edges.
Everything is sparse on the input side: rows are bags of item ids, the first encoder layer
an ``embedding_bag`` (``x W_1`` summed over the row's items, weighted by ``1 / sqrt(N_u)``);
only the ``[B, I]`` logits of the batch are dense.

Defaults follow the paper and the authors' code (dawenl/vae_cf: anneal_cap 0.2,
total_anneal_steps 200000, dropout 0.5, tanh, lam = 0 (no weight penalty), Adam, weights
Xavier-uniform, biases N(0, 0.001) truncated at 2 std). Deviations, each because the
interfaces or the comparison require it:

- Widths: the run's ``trainer.dim`` is the width of the representation (one size for every
  backbone, so aligners and generators compose), so every hidden layer is ``trainer.dim -
  1`` wide and the latent ``latent_dim`` (0: a third of that, the paper's 600:200 ratio):
  ``trainer.dim = 601`` is the paper's [600, 200]. With ``hidden_layers = 0`` the decoder
  is linear, users are ``[mu, 1]``, and the latent is ``trainer.dim - 1``.
- Batches: the shared loop samples training edges, so a step's users are the distinct users
  of ``trainer.batch_size`` edges (drawn in proportion to their degree), not a uniform
  permutation of users in batches of 500; a user may appear in several steps of an epoch.
- The step counter of the annealing is a buffer of the module (checkpointed, so a resumed
  run continues the schedule), advanced by every training-mode ``regularization``; dropout
  masks and eps come from a generator seeded by (seed, step), so they do not depend on the
  global RNG and a resumed run draws the same ones.
- Items without a training edge (unseen items of the inductive split): they are left out
  of the softmax in training (as the authors' model, which knows only training items, so
  their decoder rows never train) and out of the encoder's input at inference (their input
  weights never trained); at inference their item vector is the mean of the seen items'
  ``[W_i, b_i]`` rows. A user without any seen item is encoded from an empty row (the
  encoder's biases alone).
- RecBole's MultiVAE differs from the paper in ways this module does not copy: eps with
  standard deviation 0.01 instead of 1, and a latent half of ``latent_dimension``.
"""

from __future__ import annotations

from itertools import pairwise

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cdr.backbones.adjacency import IdentityCache
from cdr.backbones.base import BackboneBase
from cdr.backbones.lightgcn import fill_unseen, seen_mask
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative
from cdr.errors import ConfigError
from cdr.interfaces import BackboneTraits, Graph
from cdr.seeding import derive_seed


@attrs.frozen
class MultVAEConfig(BackboneConfig):
    """hidden_layers: tanh layers on each side, each ``trainer.dim - 1`` wide (paper 1);
    latent_dim: K (0 = a third of the hidden width, the paper's 200 of 600); dropout: on the
    normalised input in training (paper 0.5); anneal_cap: the largest beta (paper 0.2);
    total_anneal_steps: updates over which beta grows linearly to its cap (paper 200000)."""

    kind: str = "multvae"
    hidden_layers: int = attrs.field(default=1, validator=in_range(0, 4))
    latent_dim: int = attrs.field(default=0, validator=non_negative)
    dropout: float = attrs.field(default=0.5, validator=in_range(0.0, 1.0, high_open=True))
    anneal_cap: float = attrs.field(default=0.2, validator=non_negative)
    total_anneal_steps: int = attrs.field(default=200_000, validator=non_negative)


def layer_dims(dim: int, hidden_layers: int, latent_dim: int) -> tuple[list[int], int]:
    """``(hidden widths, K)`` for representations ``dim`` wide (see the module docstring)."""
    width = dim - 1
    if hidden_layers == 0:
        if latent_dim not in (0, width):
            raise ConfigError(
                f"backbone.latent_dim: with hidden_layers = 0 users are [mu, 1], so the "
                f"latent is trainer.dim - 1 = {width} wide; leave latent_dim at 0"
            )
        latent = width
    else:
        latent = latent_dim or width // 3
    if width < 1 or latent < 1:
        raise ConfigError(
            f"trainer.dim: {dim} leaves no room for Mult-VAE's layers ({width} hidden, "
            f"{latent} latent); use trainer.dim >= 4"
        )
    return [width] * hidden_layers, latent


@attrs.frozen(eq=False)
class Rows:
    """Users' binary item rows as bags: ``items`` [N] item ids sorted by (user, item),
    ``offsets`` [U] where each user's bag starts, ``counts`` [U] its length N_u."""

    items: Tensor
    offsets: Tensor
    counts: Tensor

    def select(self, users: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The bags of ``users`` [B]: ``(items [n], offsets [B], row [n])`` (row = the
        position in ``users`` of each entry), gathered without a loop over users."""
        counts = self.counts[users]  # [B]
        offsets = torch.cumsum(counts, 0) - counts  # [B]: where each bag starts in the batch
        row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        within = torch.arange(row.numel(), device=users.device) - offsets[row]  # [n]
        return self.items[self.offsets[users][row] + within], offsets, row


def user_rows(edge_index: Tensor, num_users: int, num_items: int, keep_items: Tensor) -> Rows:
    """Binary rows of ``edge_index`` [2, E] (duplicates once) over the items ``keep_items``
    [I] bool allows."""
    key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())  # sorted
    users, items = key // num_items, key % num_items
    keep = keep_items[items]
    users, items = users[keep], items[keep]
    counts = torch.bincount(users, minlength=num_users)  # [U]
    return Rows(items, torch.cumsum(counts, 0) - counts, counts)


class MultVAEBackbone(BackboneBase):
    """Mult-VAE over users' item rows (see the module docstring)."""

    traits = BackboneTraits(objective="own")
    seen_items: Tensor  # [I] bool: items with a training edge
    step: Tensor  # () int64: training updates taken (the annealing's update_count)

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: MultVAEConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or MultVAEConfig()
        hidden, self.latent = layer_dims(dim, cfg.hidden_layers, cfg.latent_dim)
        self.num_users, self.num_items, self.seed = num_users, num_items, seed
        gen = torch.Generator().manual_seed(seed)
        q_dims = [num_items, *hidden, 2 * self.latent]  # mu and log sigma^2 side by side
        p_dims = [self.latent, *hidden]  # the decoder up to its last (linear) layer
        # the first encoder layer as a table [I, q_1]: x W_1 is a weighted bag of its rows
        self.encoder_input = nn.Parameter(self._weight(q_dims[1], num_items, gen).T.contiguous())
        self.encoder_input_bias = nn.Parameter(self._bias(q_dims[1], gen))
        self.encoder = nn.ModuleList(self._linear(a, b, gen) for a, b in pairwise(q_dims[1:]))
        self.decoder = nn.ModuleList(self._linear(a, b, gen) for a, b in pairwise(p_dims))
        self.output_weight = nn.Parameter(self._weight(num_items, p_dims[-1], gen))  # W [I, H]
        self.output_bias = nn.Parameter(self._bias(num_items, gen))  # b [I]
        self.register_buffer("seen_items", torch.ones(num_items, dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.rows: IdentityCache[Rows] = IdentityCache(capacity=4)
        self.prepared = False
        if device is not None:
            self.to(device)

    @staticmethod
    def _weight(out_features: int, in_features: int, gen: torch.Generator) -> Tensor:
        return nn.init.xavier_uniform_(torch.empty(out_features, in_features), generator=gen)

    @staticmethod
    def _bias(size: int, gen: torch.Generator) -> Tensor:
        return nn.init.trunc_normal_(torch.empty(size), std=0.001, a=-0.002, b=0.002, generator=gen)

    @classmethod
    def _linear(cls, in_features: int, out_features: int, gen: torch.Generator) -> nn.Linear:
        layer = nn.Linear(in_features, out_features)
        with torch.no_grad():
            layer.weight.copy_(cls._weight(out_features, in_features, gen))
            layer.bias.copy_(cls._bias(out_features, gen))
        return layer

    def prepare(self, graph: Graph) -> None:
        """Remember the training graph's items (the others stay out of the model)."""
        self.seen_items.copy_(seen_mask(graph.edge_index[1], self.num_items))
        self.rows.clear()
        self.prepared = True

    def beta(self) -> float:
        """The KL weight of the current step: ``min(cap, step / total)`` (cap if total 0)."""
        cfg = self.config
        if cfg.total_anneal_steps == 0:
            return cfg.anneal_cap
        return min(cfg.anneal_cap, int(self.step) / cfg.total_anneal_steps)

    def graph_rows(self, graph: Graph) -> Rows:
        """The users' rows of ``graph`` over the seen items (cached per edge tensor)."""
        if not self.prepared:
            self.prepare(graph)
        return self.rows.get(
            graph.edge_index,
            "rows",
            lambda: user_rows(graph.edge_index, self.num_users, self.num_items, self.seen_items),
        )

    def encode(
        self, items: Tensor, offsets: Tensor, weights: Tensor, batch: int
    ) -> tuple[Tensor, Tensor]:
        """``(mu [B, K], log sigma^2 [B, K])`` of bags ``items`` [n] (``offsets`` [B]) with
        input values ``weights`` [n]: ``g_phi(x)`` (section 2.2.1), tanh between layers."""
        if items.numel() == 0:  # embedding_bag cannot take an empty input
            h = self.encoder_input_bias.expand(batch, -1)
        else:
            h = (
                F.embedding_bag(
                    items, self.encoder_input, offsets, mode="sum", per_sample_weights=weights
                )
                + self.encoder_input_bias
            )  # x W_1 + b_1: [B, q_1]
        for layer in self.encoder:
            h = layer(torch.tanh(h))
        return h[:, : self.latent], h[:, self.latent :]

    def hidden(self, z: Tensor) -> Tensor:
        """The decoder up to its last layer: ``[B, K] -> [B, H]`` (tanh after each layer)."""
        for layer in self.decoder:
            z = torch.tanh(layer(z))
        return z

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """users ``[U, H + 1] = [h(mu_u), 1]`` from each user's row of ``graph``; items
        ``[I, H + 1] = [W_i, b_i]`` (unseen items: the mean seen row, at inference)."""
        rows = self.graph_rows(graph)
        weights = rows.counts.clamp(min=1).float().rsqrt()  # x / ||x|| of a binary row
        row = torch.repeat_interleave(
            torch.arange(self.num_users, device=rows.counts.device), rows.counts
        )
        mu, _ = self.encode(rows.items, rows.offsets, weights[row], self.num_users)
        users = torch.cat([self.hidden(mu), mu.new_ones(self.num_users, 1)], dim=1)
        items = torch.cat([self.output_weight, self.output_bias[:, None]], dim=1)
        if not self.training:
            items = fill_unseen(items, self.seen_items)
        return users, items

    def negative_elbo(
        self,
        graph: Graph,
        users: Tensor,
        beta: float,
        *,
        keep: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """``mean_u [-sum_i x_ui log softmax(f(z_u))_i + beta KL_u]`` over ``users`` [B]
        (distinct) of ``graph``. ``keep`` [n]: the input dropout mask over the batch's
        entries in (user, item) order (None: no dropout); ``eps`` [B, K]: the
        reparameterisation noise (None: ``z = mu``)."""
        rows = self.graph_rows(graph)
        items, offsets, row = rows.select(users)
        counts = rows.counts[users]  # N_u: [B]
        weights = counts.clamp(min=1).float().rsqrt()[row]  # x / ||x||: [n]
        if keep is not None:
            weights = weights * keep.to(weights.device) / (1 - self.config.dropout)
        mu, logvar = self.encode(items, offsets, weights, users.numel())  # g_phi: [B, K] each
        z = mu if eps is None else mu + eps.to(mu.device) * torch.exp(0.5 * logvar)
        # the softmax runs over the seen items only: logits [B, I_s]
        weight: Tensor = self.output_weight
        bias: Tensor = self.output_bias
        columns = items
        seen = torch.nonzero(self.seen_items).flatten()  # [I_s]
        if seen.numel() < self.num_items:
            weight, bias = weight[seen], bias[seen]
            columns = (torch.cumsum(self.seen_items, 0) - 1)[items]  # column among the seen
        log_pi = F.log_softmax(torch.addmm(bias, self.hidden(z), weight.T), dim=1)  # [B, I_s]
        neg_ll = -log_pi[row, columns].sum()  # sum_u -sum_i x_ui log pi_i (eq. 2)
        kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1).sum()  # sum_u KL_u
        return (neg_ll + beta * kl) / users.numel()

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """The negative beta-ELBO (annealed beta) of the batch's distinct users;
        ``items`` is not read. In training mode it draws the dropout mask and eps from
        (seed, step) and advances the step."""
        users = torch.unique(users)
        if users.numel() == 0:
            return self.output_bias.new_zeros(())
        beta = self.beta()
        if not self.training:
            return self.negative_elbo(graph, users, beta)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "multvae", int(self.step)))
        self.step += 1
        entries = int(self.graph_rows(graph).counts[users].sum())
        keep = torch.rand(entries, generator=gen) >= self.config.dropout
        eps = torch.randn(users.numel(), self.latent, generator=gen)
        return self.negative_elbo(graph, users, beta, keep=keep, eps=eps)


def _build(config: MultVAEConfig, ctx: BuildContext) -> MultVAEBackbone:
    return MultVAEBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[MultVAEConfig, MultVAEBackbone] = Component(
    "multvae",
    "backbones",
    MultVAEConfig,
    _build,
    "Mult-VAE: multinomial VAE over users' item rows (inductive for users)",
)
