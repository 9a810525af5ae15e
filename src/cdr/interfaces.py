"""The five interfaces every cdr model is composed of.

Each is a runtime-checkable Protocol: an implementation need not inherit from anything, it
only has to provide these methods (trainable ones are ``torch.nn.Module`` subclasses).
Shapes: B = batch, D = representation dim, U = users, I = items of one domain, E = edges.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import attrs
from torch import Tensor

from cdr.data.records import CrossDomainDataset, Domain
from cdr.progress import Reporter

Entity = Literal["item", "user"]


@runtime_checkable
class Encoder(Protocol):
    """Raw content -> feature matrix.

    ``encode(domain, "item")`` returns ``[num_items, dim]`` features from item content (title,
    description, categories, image); ``encode(domain, "user")`` returns ``[num_users, dim]``
    features from users' review text (rows of users without content are zeros). The caller
    passes a domain restricted to what the model may see (training interactions only).
    """

    @property
    def dim(self) -> int: ...

    def encode(
        self, domain: Domain, entity: Entity, reporter: Reporter | None = None
    ) -> Tensor: ...


@runtime_checkable
class Generator(Protocol):
    """Auxiliary-domain user vectors -> target-domain user vectors (MuSiC section 3.3).

    ``loss(target, condition)``: scalar training loss for target vectors ``[B, D]``; the
    condition ``[B, D]`` is the users' auxiliary-domain vectors, or None for side users
    (target-only; unconditional stage 1). ``generate(condition)`` returns ``[B, D]``
    target-domain vectors for (cold-start) users from their auxiliary vectors.
    """

    def loss(self, target: Tensor, condition: Tensor | None) -> Tensor: ...

    def generate(self, condition: Tensor, *, seed: int | None = None) -> Tensor: ...


@attrs.frozen(eq=False)
class Graph:
    """A bipartite interaction graph of one domain.

    edge_index: [2, E] (user, item) pairs, users global, items domain-local.
    user_features: [U, F] or None; item_features: [I, F] or None.
    """

    edge_index: Tensor
    num_users: int
    num_items: int
    user_features: Tensor | None = None
    item_features: Tensor | None = None


@runtime_checkable
class GraphBackbone(Protocol):
    """Interaction graph (+ node features) -> user and item representations.

    ``represent(graph)`` returns ``(users [U, D], items [I, D])``. Called with the training
    graph while training; at inference of an inductive model, with the training graph plus
    the new edges (E_new), so unseen users/items get representations without retraining.
    ``regularization(users, items)`` is the backbone's own extra loss (INMO's SE loss; 0 for
    plain backbones) for a batch of user and item indices.
    """

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]: ...

    def regularization(self, users: Tensor, items: Tensor) -> Tensor: ...


@runtime_checkable
class Aligner(Protocol):
    """Two domains' representations of the same overlapping users -> alignment loss.

    ``loss(a, b)``: a, b are ``[B, D]``, row i of both is the same user; returns a scalar.
    """

    def loss(self, a: Tensor, b: Tensor) -> Tensor: ...


@runtime_checkable
class Scorer(Protocol):
    """User and item representations -> scores.

    ``score(users [B, D], items [I, D]) -> [B, I]`` (ranking, all pairs);
    ``rate(users [E, D], items [E, D]) -> [E]`` (rating of aligned pairs, e.g. eq. 8).
    """

    def score(self, users: Tensor, items: Tensor) -> Tensor: ...

    def rate(self, users: Tensor, items: Tensor) -> Tensor: ...


@runtime_checkable
class DatasetProvider(Protocol):
    """Builds a cross-domain dataset (synthetic, RecBole atomic files, Amazon reviews...)."""

    def load(self, reporter: Reporter | None = None) -> CrossDomainDataset: ...
