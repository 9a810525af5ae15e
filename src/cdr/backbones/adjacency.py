"""The symmetrically normalised bipartite adjacency and LightGCN's propagation over it.

Nodes are stacked users first, then items: node ``u`` is user ``u``, node ``U + i`` is item
``i``. The adjacency ``A_hat = D^-1/2 A D^-1/2`` (LightGCN eq. 7; no self loops; isolated
nodes keep a zero row) is a CSR tensor ``[(U + I), (U + I)]``; nothing dense of size U x I
is ever built.

``A_hat`` is symmetric, so the gradient of ``A_hat @ X`` with respect to X is
``A_hat @ G``: :class:`LayerMeanPropagation` reuses the same CSR matrix for its backward and
folds the L layers and their mean into one autograd node (Horner's rule backwards), which
avoids torch.sparse.mm's transposing backward and keeps no per-layer activations.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor


def normalized_adjacency(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` as CSR ``[(U + I), (U + I)]`` for (user, item) edges ``[2, E]``.

    Duplicate edges count once. Float32, on ``edge_index``'s device.
    """
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index: expected shape [2, E], got {list(edge_index.shape)}")
    n = num_users + num_items
    # one key per undirected edge, deduplicated: [E']
    key = torch.unique(edge_index[0].long() * num_items + edge_index[1].long())
    users, items = key // num_items, key % num_items
    rows = torch.cat([users, items + num_users])  # [2E']
    cols = torch.cat([items + num_users, users])  # [2E']
    degree = torch.bincount(rows, minlength=n).to(torch.float32)  # [N]
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1.0).rsqrt(), torch.zeros_like(degree))
    values = inv_sqrt[rows] * inv_sqrt[cols]  # [2E']
    return csr_from_edges(rows, cols, values, (n, n))


class LayerMeanPropagation(torch.autograd.Function):
    """``mean(X, A X, ..., A^L X)`` for a symmetric sparse ``A`` (LightGCN eqs. 8-9).

    Backward: ``dX = (1 / (L + 1)) * sum_l A^l G``, evaluated as ``H <- G + A H`` (L times),
    i.e. L sparse products with the same ``A``, no transpose, no stored layers.
    """

    @staticmethod
    def forward(ctx: Any, adjacency: Tensor, x: Tensor, num_layers: int) -> Tensor:
        ctx.adjacency, ctx.num_layers = adjacency, num_layers
        total, layer = x, x
        for _ in range(num_layers):
            layer = adjacency @ layer  # [N, D]
            total = total + layer
        return total / (num_layers + 1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        adjacency, num_layers = ctx.adjacency, ctx.num_layers
        grad = grad.contiguous()
        acc = grad
        for _ in range(num_layers):
            acc = grad + adjacency @ acc  # [N, D]
        return None, acc / (num_layers + 1), None


def layer_mean(adjacency: Tensor, x: Tensor, num_layers: int) -> Tensor:
    """``[N, D] -> [N, D]``: the mean of layers 0..L of ``x`` propagated over ``adjacency``."""
    if num_layers == 0:
        return x
    out: Tensor = LayerMeanPropagation.apply(adjacency, x, num_layers)
    return out


def csr_from_edges(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """CSR ``shape`` from COO entries (duplicates are not merged; the caller dedupes)."""
    order = torch.argsort(rows * shape[1] + cols)
    rows, cols, values = rows[order], cols[order], values[order]
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, cols, values, shape, device=rows.device, check_invariants=False
        )


class SparseMatmul(torch.autograd.Function):
    """``M @ X`` for a constant sparse ``M`` whose transpose ``M_t`` is given (CSR both):
    the backward is ``M_t @ G``, a plain CSR product instead of a transposing one."""

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, matrix_t: Tensor, x: Tensor) -> Tensor:
        ctx.matrix_t = matrix_t
        return matrix @ x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, Tensor]:
        return None, None, ctx.matrix_t @ grad.contiguous()


def sparse_matmul(matrix: Tensor, matrix_t: Tensor, x: Tensor) -> Tensor:
    """``[R, C] @ [C, D] -> [R, D]`` with a transpose-free backward (see SparseMatmul)."""
    out: Tensor = SparseMatmul.apply(matrix, matrix_t, x)
    return out


T = TypeVar("T")


class IdentityCache(Generic[T]):
    """Values derived from a graph, keyed by the identity of its ``edge_index`` tensor.

    An entry is reused while the same tensor object (unmodified: same ``_version``) comes
    with the same extra key; at most ``capacity`` entries (training + inference graphs).
    """

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._entries: list[tuple[weakref.ref[Tensor], int, Hashable, T]] = []

    def get(self, edge_index: Tensor, key: Hashable, build: Callable[[], T]) -> T:
        version = edge_index._version
        for ref, ver, k, value in self._entries:
            if ref() is edge_index and ver == version and k == key:
                return value
        value = build()
        live = [e for e in self._entries if e[0]() is not None]
        self._entries = [
            *live[len(live) - self.capacity + 1 :],
            (weakref.ref(edge_index), version, key, value),
        ]
        return value

    def clear(self) -> None:
        self._entries.clear()


class AdjacencyCache(IdentityCache[Tensor]):
    """Normalised adjacencies (:func:`normalized_adjacency`) per ``edge_index`` tensor."""

    def adjacency(self, edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
        return self.get(
            edge_index,
            (num_users, num_items),
            lambda: normalized_adjacency(edge_index, num_users, num_items),
        )


#: the cache behind :func:`cdr.backbones.lightgcn.propagate`.
DEFAULT_CACHE = AdjacencyCache()
