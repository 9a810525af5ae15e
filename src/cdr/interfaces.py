"""The five interfaces every cdr model is composed of.

Each is a runtime-checkable Protocol: an implementation need not inherit from anything, it
only has to provide these methods (trainable ones are ``torch.nn.Module`` subclasses).
Shapes: B = batch, D = representation dim, U = users, I = items of one domain, E = edges.

What a pipeline needs to know about a component is part of its interface, never found by
name: a generator's ``traits`` (uses the auxiliary history, trains on side users, shares
the user space, lambda of eq. 13), a backbone's ``traits`` (item modalities it consumes)
and its hooks (``prepare`` with the training graph, ``set_epoch`` at every epoch,
``regularization`` given that graph), an aligner's ``batch_users``. The base classes in
``generators/base.py`` and ``backbones/base.py`` give the neutral defaults, so an
implementation overrides only what it uses.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import attrs
from torch import Tensor

from cdr.data.records import CrossDomainDataset, Domain
from cdr.progress import Reporter

Entity = Literal["item", "user"]


@attrs.frozen(eq=False)
class History:
    """A batch of users' auxiliary-domain histories, as item vectors.

    items [B, L, D] (padded, most recent first), mask [B, L] (True = a real item). Given to
    generators whose ``traits.uses_history`` is True (PTUPCDR's characteristic encoder).
    """

    items: Tensor
    mask: Tensor


@attrs.frozen
class GeneratorTraits:
    """What a pipeline must know about a generator.

    uses_history: ``loss``/``generate`` read the users' auxiliary ``History``;
    side_users: it learns from side users' target vectors (stage 1, eq. 11);
    shared_user_space: one user representation for both domains (CMF): the target space
    must also explain training users' target ratings from their auxiliary features;
    joint_weight: lambda of eq. 13 (1 = generator loss only, 0 = rating loss only);
    servable: its state can rebuild it from the registry for serving new users.
    """

    uses_history: bool = False
    side_users: bool = False
    shared_user_space: bool = False
    joint_weight: float = 1.0
    servable: bool = True


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

    ``loss(target, condition, history)``: scalar training loss for target vectors ``[B, D]``;
    the condition ``[B, D]`` is the users' auxiliary-domain vectors, or None for side users
    (target-only; unconditional stage 1). ``generate(condition)`` returns ``[B, D]``
    target-domain vectors for (cold-start) users from their auxiliary vectors. ``history``
    is given (not None) exactly when ``traits.uses_history``.
    """

    @property
    def traits(self) -> GeneratorTraits: ...

    def loss(
        self, target: Tensor, condition: Tensor | None, history: History | None = None
    ) -> Tensor: ...

    def generate(
        self, condition: Tensor, *, history: History | None = None, seed: int | None = None
    ) -> Tensor: ...


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


@attrs.frozen
class BackboneTraits:
    """What a pipeline must know about a graph backbone.

    text_encoder / image_encoder: registered encoder names whose item features the backbone
    consumes (MICRec's modality aggregation), given through ``set_modalities``; None = that
    modality is not used.
    objective: ``"bpr"`` (the training step adds BPR on ``represent``'s dot products to the
    backbone's ``regularization``) or ``"own"`` (``regularization`` is the whole loss of a
    batch: NeuMF's BCE, Mult-VAE's ELBO, AlphaRec's InfoNCE).
    scoring: ``"scorer"`` (the configured Scorer ranks user against item representations)
    or ``"own"`` (the backbone's ``score(users [B, D], items [I, D]) -> [B, I]`` does, for
    a model whose preference is not a function of two vectors alone, e.g. NeuMF's MLP; see
    ``ScoringBackbone``).
    """

    text_encoder: str | None = None
    image_encoder: str | None = None
    objective: Literal["bpr", "own"] = attrs.field(
        default="bpr", validator=attrs.validators.in_(("bpr", "own"))
    )
    scoring: Literal["scorer", "own"] = attrs.field(
        default="scorer", validator=attrs.validators.in_(("scorer", "own"))
    )

    @property
    def modalities(self) -> bool:
        return self.text_encoder is not None or self.image_encoder is not None


@runtime_checkable
class GraphBackbone(Protocol):
    """Interaction graph (+ node features) -> user and item representations.

    ``represent(graph)`` returns ``(users [U, D], items [I, D])``. Called with the training
    graph while training; at inference of an inductive model, with the training graph plus
    the new edges (E_new), so unseen users/items get representations without retraining.
    Hooks, in call order: ``prepare(graph)`` once with the training graph (e.g. INMO's
    template choice); ``set_modalities(features)`` when ``traits`` names encoders;
    ``set_epoch(epoch)`` at the start of every training epoch (INMO's alpha, a view
    resampling); ``regularization(graph, users, items)``: the backbone's own extra loss for a
    batch of user [B] and item [B, n] indices on the training ``graph`` (INMO's SE loss,
    L2 on the batch's embeddings, a self-supervised term; 0 for plain backbones).
    ``pair(other)``: called once after both domains' backbones are built, as
    ``target.pair(source)``, before ``prepare``; a cross-domain backbone ties its
    domain-shared parameters to ``other``'s (UniCDR's shared user embedding), so they appear
    once in the model; a no-op for single-domain backbones.
    """

    @property
    def traits(self) -> BackboneTraits: ...

    def pair(self, other: GraphBackbone) -> None: ...

    def prepare(self, graph: Graph) -> None: ...

    def set_modalities(self, modalities: ModalityFeatures) -> None: ...

    def set_epoch(self, epoch: int) -> None: ...

    def represent(self, graph: Graph) -> tuple[Tensor, Tensor]: ...

    def regularization(self, graph: Graph, users: Tensor, items: Tensor) -> Tensor: ...


@runtime_checkable
class ScoringBackbone(GraphBackbone, Protocol):
    """A backbone with ``traits.scoring == "own"``: it scores user representations [B, D]
    against item representations [I, D] itself (``score`` -> [B, I], higher = preferred),
    and aligned pairs users [B, D] with items [B, D] (``score_pairs`` -> [B])."""

    def score(self, users: Tensor, items: Tensor) -> Tensor: ...

    def score_pairs(self, users: Tensor, items: Tensor) -> Tensor: ...


@attrs.frozen(eq=False)
class ModalityFeatures:
    """Item features per modality for a backbone that aggregates them: text [I, F_t] and
    image [I, F_v], either None when absent (a domain without images)."""

    text: Tensor | None = None
    image: Tensor | None = None

    def __attrs_post_init__(self) -> None:
        if self.text is not None and self.image is not None and len(self.text) != len(self.image):
            raise ValueError(
                f"image: {len(self.image)} rows, but text has {len(self.text)} (one per item)"
            )

    @property
    def empty(self) -> bool:
        return self.text is None and self.image is None


@runtime_checkable
class Aligner(Protocol):
    """Two domains' representations of the same overlapping users -> alignment loss.

    ``loss(a, b)``: a, b are ``[B, D]``, row i of both is the same user; returns a scalar.
    ``batch_users``: how many overlapping users a training step samples for it.
    """

    @property
    def batch_users(self) -> int: ...

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
