"""XSimGCL (Yu et al., TKDE 2023, "XSimGCL: Towards Extremely Simple Graph Contrastive
Learning for Recommendation"): LightGCN whose layers are perturbed by small random noise,
with a contrast between two layers of that one perturbed pass (a MICRec baseline). The
paper's formulas are written out below by name rather than by number (the numbering could
not be checked against the published version here); each was checked against the authors'
code (SELFRec ``model/graph/XSimGCL.py``) and RecBole-GNN's.

- Perturbation (the noise-based augmentation of SimGCL, kept by XSimGCL): after every
  propagation layer ``e' = e + Delta``, ``Delta = eps * sign(e) ⊙ normalize(Delta_bar)``,
  ``Delta_bar ~ U(0, 1)^d``: a noise vector of L2 norm eps lying in the same hyperoctant as
  ``e`` (so it rotates ``e`` by a bounded angle and never flips a coordinate's sign); the
  perturbed layer is what the next layer propagates.
- Representations (the perturbed encoder): the mean of layers 1..L of the perturbed pass
  (layer 0, the raw embedding, is left out, as in the authors' code); at inference the
  same mean of the unperturbed pass.
- Cross-layer contrast (the CL loss): with z' the final representation and z'' the l*-th
  perturbed layer of the *same* pass, L2-normalised, for the batch's distinct users
  ``L_cl^user = mean_u -log exp(z'_u . z''_u / tau) / sum_v exp(z'_u . z''_v / tau)``,
  v over the batch's distinct users (in-batch negatives); the same for the batch's distinct
  positive items; ``L_cl = L_cl^user + L_cl^item``.
- Objective (the joint loss): ``L = L_BPR + lambda L_cl + lambda_2 ||Theta||^2``; the
  training step supplies BPR on the perturbed representations ``represent`` returned;
  ``regularization`` returns the other two, reusing that same pass (one forward per step,
  the point of XSimGCL over SimGCL's three).

Defaults follow the paper and its authors' code (SELFRec ``conf/XSimGCL.yaml``: 2 layers,
l* = 1, lambda = 0.2, eps = 0.2, tau = 0.15, L2 1e-4, Xavier-uniform embeddings); RecBole-GNN
uses lambda 0.1, tau 0.2. Deviations: the L2 term is ``lambda_2 (||e_u||^2 + ||e_i||^2 +
||e_j||^2) / (2B)`` on the batch's layer-0 embeddings (RecBole-GNN's squared form and the
paper's ``||Theta||^2``; SELFRec sums un-squared norms of the final vectors); the noise is
drawn from torch's global generator on the embeddings' device, whose state the training
loop checkpoints, so a resumed run draws the same noise. Unseen nodes are handled as
LightGCN (mean layer-0 embedding, then propagated over the new edges).
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from cdr.backbones.adjacency import sparse_matmul
from cdr.backbones.lightgcn import LightGCNBackbone, fill_unseen
from cdr.components import BackboneConfig, BuildContext, Component
from cdr.config.validators import in_range, non_negative, positive
from cdr.interfaces import Graph


@attrs.frozen
class XSimGCLConfig(BackboneConfig):
    """num_layers: L (>= 1); contrast_layer: l*, the layer contrasted with the final
    representation (1..L); eps: the noise's L2 norm; cl_weight: lambda; temperature: tau;
    reg_weight: lambda_2 (L2 on the batch's layer-0 embeddings)."""

    kind: str = "xsimgcl"
    num_layers: int = attrs.field(default=2, validator=in_range(1, 16))
    contrast_layer: int = attrs.field(default=1, validator=in_range(1, 16))
    eps: float = attrs.field(default=0.2, validator=non_negative)
    cl_weight: float = attrs.field(default=0.2, validator=non_negative)
    temperature: float = attrs.field(default=0.15, validator=positive)
    reg_weight: float = attrs.field(default=1e-4, validator=non_negative)

    def __attrs_post_init__(self) -> None:
        if self.contrast_layer > self.num_layers:
            raise ValueError(
                f"contrast_layer: {self.contrast_layer} is above num_layers {self.num_layers}"
            )


def perturb(x: Tensor, eps: float) -> Tensor:
    """``x + eps * sign(x) ⊙ normalize(U(0, 1))`` row-wise for ``x`` [N, D] (the perturbation)."""
    noise = F.normalize(torch.rand_like(x), dim=1)  # [N, D], unit rows, all >= 0
    return x + eps * torch.sign(x) * noise


def in_batch_info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """The CL loss for rows a [B, D] against b [B, D] (row i of both is one node): the mean over
    rows of ``-log softmax_j(cos(a_i, b_j) / tau)_i``."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature  # [B, B]
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


@attrs.frozen(eq=False)
class PerturbedPass:
    """One forward pass: ``final`` [N, D] (mean of layers 1..L) and ``contrast`` [N, D]
    (layer l*), nodes stacked users first; ``edge_index``: the graph it ran on."""

    edge_index: Tensor
    final: Tensor
    contrast: Tensor


class XSimGCLBackbone(LightGCNBackbone):
    """LightGCN embeddings with XSimGCL's perturbed propagation and cross-layer contrast.

    In training, ``represent`` runs the perturbed pass and keeps it for this step's
    ``regularization`` (which runs its own pass if it is given another graph)."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int,
        config: XSimGCLConfig | None = None,
        *,
        seed: int = 0,
        device: torch.device | None = None,
    ) -> None:
        self.config = config or XSimGCLConfig()
        super().__init__(
            num_users, num_items, dim, self.config.num_layers, init="xavier", seed=seed,
            device=device,
        )  # fmt: skip
        self.last_pass: PerturbedPass | None = None

    def forward_pass(self, graph: Graph, perturbed: bool) -> PerturbedPass:
        """Layers 1..L over ``graph``, each perturbed when ``perturbed``."""
        users: Tensor = self.user_emb  # [U, D]
        items: Tensor = self.item_emb  # [I, D]
        if not self.training:
            users = fill_unseen(users, self.seen_users)
            items = fill_unseen(items, self.seen_items)
        adjacency = self.cache.adjacency(graph.edge_index, users.shape[0], items.shape[0])
        x = torch.cat([users, items])  # [N, D]
        total, contrast = torch.zeros_like(x), x
        for layer in range(1, self.config.num_layers + 1):
            x = sparse_matmul(adjacency, adjacency, x)  # A_hat is symmetric: [N, D]
            if perturbed:
                x = perturb(x, self.config.eps)
            total = total + x
            if layer == self.config.contrast_layer:
                contrast = x
        return PerturbedPass(graph.edge_index, total / self.config.num_layers, contrast)

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]:
        if not self.prepared:
            self.prepare(graph)
        perturbed = self.training and self.config.eps > 0
        result = self.forward_pass(graph, perturbed)
        self.last_pass = result if self.training and self.config.cl_weight > 0 else None
        num_users = self.user_emb.shape[0]
        return result.final[:num_users], result.final[num_users:]

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor:
        """``lambda L_cl + lambda_2 ||Theta_batch||^2`` for users [B] and items [B, n]
        (positive, negatives) of a BPR batch on the training ``graph`` (the joint loss)."""
        cfg = self.config
        pos = items[:, 0] if items.dim() == 2 else items
        total = self.user_emb.new_zeros(())
        if users.numel() == 0:
            return total
        if cfg.cl_weight > 0:
            step = self.last_pass
            self.last_pass = None  # one step's pass serves one regularization
            if step is None or step.edge_index is not graph.edge_index:
                step = self.forward_pass(graph, self.training and cfg.eps > 0)
            num_users = self.user_emb.shape[0]
            u, i = torch.unique(users), torch.unique(pos) + num_users
            cl = in_batch_info_nce(step.final[u], step.contrast[u], cfg.temperature)
            cl = cl + in_batch_info_nce(step.final[i], step.contrast[i], cfg.temperature)
            total = total + cfg.cl_weight * cl
        if cfg.reg_weight > 0:
            squares = self.user_emb[users].pow(2).sum() + self.item_emb[items].pow(2).sum()
            total = total + cfg.reg_weight * squares / (2 * users.numel())
        return total


def _build(config: XSimGCLConfig, ctx: BuildContext) -> XSimGCLBackbone:
    return XSimGCLBackbone(
        ctx.num_users, ctx.num_items, ctx.dim, config, seed=ctx.seed, device=ctx.device
    )


component: Component[XSimGCLConfig, XSimGCLBackbone] = Component(
    "xsimgcl",
    "backbones",
    XSimGCLConfig,
    _build,
    "XSimGCL: LightGCN + noise-perturbed layers, cross-layer contrast",
)
