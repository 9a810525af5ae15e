"""``id``: rating-only features, matrix-factorisation embeddings of the interaction matrix.

For MuSiC's "w/o MLLM" ablation and the rating-only baselines. The user x item matrix R
(ratings, or 1 per interaction with ``values = "binary"``) is factorised by a rank-``dim``
truncated SVD, R ~ U S V^T, the least-squares optimal rank-``dim`` MF; users get
``U sqrt(S)`` and items ``V sqrt(S)`` so that their dot product reconstructs R. Deterministic:
exact SVD for small matrices, seeded randomised SVD for large ones, and each component's sign
fixed so that its largest item loading is positive. Users/items without interactions get
zero rows; if ``dim`` exceeds the matrix rank the extra columns are zero.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from cdr.components import BuildContext, Component, EncoderConfig
from cdr.config.validators import non_negative, one_of, positive
from cdr.data.records import Domain
from cdr.interfaces import Entity
from cdr.progress import Reporter

#: matrices with at most this many cells are factorised by an exact dense SVD.
DENSE_LIMIT = 4_000_000


@attrs.frozen
class IdEncoderConfig(EncoderConfig):
    kind: str = "id"
    dim: int = attrs.field(default=32, validator=positive)
    values: str = attrs.field(default="rating", validator=one_of(("rating", "binary")))
    seed: int = attrs.field(default=0, validator=non_negative)


def factorize(
    domain: Domain, dim: int, *, binary: bool = False, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Rank-``dim`` SVD factors of the interaction matrix: users [U, dim], items [I, dim]."""
    inter = domain.interactions
    num_users, num_items = domain.num_users, domain.num_items
    values = torch.ones(len(inter)) if binary else inter.rating.float()
    matrix = torch.sparse_coo_tensor(
        torch.stack([inter.user, inter.item]), values, (num_users, num_items), check_invariants=True
    ).coalesce()  # [U, I]; repeated (user, item) pairs are summed
    users = torch.zeros(num_users, dim)
    items = torch.zeros(num_items, dim)
    rank = min(dim, num_users, num_items)
    if len(inter) == 0 or rank == 0:
        return users, items
    if num_users * num_items <= DENSE_LIMIT:
        u, s, vh = torch.linalg.svd(matrix.to_dense().double(), full_matrices=False)
        u, s, v = u[:, :rank], s[:rank], vh[:rank].T
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            q = min(rank + 10, num_users, num_items)
            u, s, v = torch.svd_lowrank(matrix.double(), q=q, niter=6)
        u, s, v = u[:, :rank], s[:rank], v[:, :rank]
    # Sign convention: the largest-magnitude item loading of each component is positive.
    peak = v.abs().argmax(dim=0)  # [rank]
    sign = torch.sign(v[peak, torch.arange(rank)])
    sign[sign == 0] = 1.0
    scale = s.sqrt() * sign  # [rank]
    users[:, :rank] = (u * scale).float()
    items[:, :rank] = (v * scale).float()
    # Exact zeros (not round-off) for rows without interactions.
    users[torch.bincount(inter.user, minlength=num_users) == 0] = 0.0
    items[torch.bincount(inter.item, minlength=num_items) == 0] = 0.0
    return users, items


class IdEncoder:
    """Interaction-only features of ``dim`` columns (see the module docstring)."""

    def __init__(self, config: IdEncoderConfig) -> None:
        self.config = config

    @property
    def dim(self) -> int:
        return self.config.dim

    def encode(self, domain: Domain, entity: Entity, reporter: Reporter | None = None) -> Tensor:
        users, items = factorize(
            domain, self.config.dim, binary=self.config.values == "binary", seed=self.config.seed
        )
        out = items if entity == "item" else users
        if reporter is not None:
            reporter(f"id {entity} features", advance=out.shape[0], total=out.shape[0])
        return out


def _build(config: IdEncoderConfig, ctx: BuildContext) -> IdEncoder:
    return IdEncoder(config)


component = Component(
    "id", "encoders", IdEncoderConfig, _build, "rating-only MF (truncated SVD) embeddings"
)
