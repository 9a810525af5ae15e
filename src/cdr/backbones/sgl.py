"""SGL (Wu et al., SIGIR 2021, "Self-supervised Graph Learning for Recommendation"):
LightGCN plus a contrastive task between two randomly augmented views of the graph.

- Views (section 3.2.1): each epoch draws two sub-graphs s', s'' of the training graph by
  edge dropout (``ED``: each edge kept with probability 1 - rho, eq. 5) or node dropout
  (``ND``: each node and its edges dropped with probability rho, eq. 4); both views share
  the embeddings and the LightGCN encoder.
- Contrastive loss (eq. 9-10): for the batch's users, with z', z'' the L2-normalised view
  representations and s the cosine similarity,
  ``L_ssl^user = sum_u -log exp(s(z'_u, z''_u) / tau) / sum_v exp(s(z'_u, z''_v) / tau)``,
  v over all users (the authors' code scores every user of the view); the same for the
  batch's positive items; ``L_ssl = L_ssl^user + L_ssl^item``.
- Objective (eq. 11): ``L = L_BPR + lambda_1 L_ssl + lambda_2 ||Theta||^2``; the training
  step supplies L_BPR, ``regularization(graph, users, items)`` returns the other two, with
  the L2 term on the batch's layer-0 embeddings (as the authors' and RecBole's code).

Defaults follow the paper (section 4.1.3: rho = 0.1, tau = 0.2, lambda_1 = 0.1, 3 layers);
RecBole's SGL uses tau 0.5, lambda_1 0.05, lambda_2 1e-5. The authors' code sums BPR,
L_ssl and the L2 term over the batch; here BPR is a batch mean, so L_ssl and the L2 term
are divided by the batch size (the same ratios). Deviations: views are drawn
from a generator seeded by (seed, epoch), so a resumed run redraws exactly the views it
would have had (no view state in checkpoints); the random-walk augmentation (per-layer
views) is not implemented. Unseen nodes are handled as LightGCN (mean embedding).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from cdr.backbones.adjacency import IdentityCache
from cdr.backbones.lightgcn import LightGCNBackbone, propagate
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, one_of, positive
from cdr.interfaces import Graph
from cdr.seeding import derive_seed

AUGMENTATIONS = ("ed", "nd")


@attrs.frozen
class SGLConfig(BackboneConfig):
    """num_layers: L; augmentation: ed (edge dropout) or nd (node dropout); drop_ratio:
    rho; temperature: tau; ssl_weight: lambda_1; reg_weight: lambda_2 (L2 on the batch's
    layer-0 embeddings); init_std: N(0, std) embedding init."""

    kind: str = "sgl"
    num_layers: int = attrs.field(default=3, validator=non_negative)
    augmentation: str = attrs.field(default="ed", validator=one_of(AUGMENTATIONS))
    drop_ratio: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, high_open=True))
    temperature: float = attrs.field(default=0.2, validator=positive)
    ssl_weight: float = attrs.field(default=0.1, validator=non_negative)
    reg_weight: float = attrs.field(default=1e-4, validator=non_negative)
    init_std: float = attrs.field(default=0.1, validator=positive)


def drop_view(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    augmentation: str,
    rho: float,
    generator: torch.Generator,
) -> Tensor:
    """A sub-graph ``[2, E']`` of ``edge_index`` [2, E] (eq. 4 node / eq. 5 edge dropout)."""
    if augmentation == "ed":
        keep = torch.rand(edge_index.shape[1], generator=generator) >= rho
    else:
        users = torch.rand(num_users, generator=generator) >= rho
        items = torch.rand(num_items, generator=generator) >= rho
        keep = users[edge_index[0].cpu()] & items[edge_index[1].cpu()]
    return edge_index[:, keep.to(edge_index.device)]


def info_nce(view_a: Tensor, view_b: Tensor, index: Tensor, temperature: float) -> Tensor:
    """eq. 10 for the nodes ``index`` [B] against every node of the other view [N, D]."""
    a = F.normalize(view_a[index], dim=1)  # [B, D]
    b = F.normalize(view_b, dim=1)  # [N, D]
    logits = a @ b.T / temperature  # [B, N]
    return F.cross_entropy(logits, index, reduction="sum")


class SGLBackbone(LightGCNBackbone):
    """LightGCN with SGL's two-view contrastive regularisation (see the module docstring).

    Hooks: ``set_epoch`` selects the epoch whose views ``regularization`` draws from the
    training graph it is given."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: SGLConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.config = config or SGLConfig()
        super().__init__(
            num_users,
            num_items,
            dim,
            self.config.num_layers,
            self.config.init_std,
            seed=seed,
            device=device,
        )
        self.seed, self.epoch = seed, 0
        self.views: IdentityCache[tuple[Tensor, Tensor]] = IdentityCache(capacity=2)

    def set_epoch(self, epoch: int) -> None:
        """New views every epoch (section 3.2.1)."""
        self.epoch = epoch

    def epoch_views(self, graph: Graph) -> tuple[Tensor, Tensor]:
        """The two views of ``graph`` for the current epoch, drawn from (seed, epoch)."""

        def draw() -> tuple[Tensor, Tensor]:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "sgl-views", self.epoch))
            cfg = self.config
            return (
                drop_view(graph.edge_index, graph.num_users, graph.num_items,
                          cfg.augmentation, cfg.drop_ratio, gen),
                drop_view(graph.edge_index, graph.num_users, graph.num_items,
                          cfg.augmentation, cfg.drop_ratio, gen),
            )  # fmt: skip

        return self.views.get(graph.edge_index, ("views", self.epoch), draw)

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``lambda_1 L_ssl + lambda_2 ||Theta_batch||^2`` for users [B] and items [B, 2]
        (positive, negative) of a BPR batch on the training ``graph`` (eq. 11)."""
        cfg = self.config
        pos = items[:, 0] if items.dim() == 2 else items
        total = self.user_emb.new_zeros(())
        if cfg.ssl_weight > 0 and users.numel():
            view_a, view_b = self.epoch_views(graph)
            layers = self.num_layers
            ua, ia = propagate(view_a, self.user_emb, self.item_emb, layers, cache=self.cache)
            ub, ib = propagate(view_b, self.user_emb, self.item_emb, layers, cache=self.cache)
            u, i = torch.unique(users), torch.unique(pos)
            ssl = info_nce(ua, ub, u, cfg.temperature) + info_nce(ia, ib, i, cfg.temperature)
            total = total + cfg.ssl_weight * ssl / users.numel()
        if cfg.reg_weight > 0 and users.numel():
            batch = torch.cat([self.user_emb[users], self.item_emb[items.flatten()]])
            total = total + cfg.reg_weight * batch.pow(2).sum() / (2 * users.numel())
        return total


def _build(config: SGLConfig, ctx: BuildContext) -> SGLBackbone:
    return SGLBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[SGLConfig, SGLBackbone] = Component(
    "sgl",
    "backbones",
    SGLConfig,
    _build,
    "SGL: LightGCN + two-view contrastive learning (edge/node dropout)",
)
