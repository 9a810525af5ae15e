"""The in-memory data model every other layer consumes.

Users share one global index space across the two domains (user ``u`` is the same person in
the auxiliary and the target domain); items are indexed per domain, ``0..num_items-1``.
Interactions are parallel 1-D tensors, so a domain's graph is ``edge_index = [user; item]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import torch
from torch import Tensor


@attrs.frozen(eq=False)
class Interactions:
    """Edges of one domain, all of length E.

    user: [E] int64 global user index; item: [E] int64 domain-local item index;
    rating: [E] float32 (1.0 for implicit feedback); timestamp: [E] int64 (0 if unknown).
    """

    user: Tensor
    item: Tensor
    rating: Tensor
    timestamp: Tensor

    def __len__(self) -> int:
        return int(self.user.numel())

    @classmethod
    def empty(cls) -> Interactions:
        long = torch.empty(0, dtype=torch.long)
        return cls(long, long.clone(), torch.empty(0), long.clone())

    @classmethod
    def concat(cls, parts: Sequence[Interactions]) -> Interactions:
        if not parts:
            return cls.empty()
        return cls(
            torch.cat([p.user for p in parts]),
            torch.cat([p.item for p in parts]),
            torch.cat([p.rating for p in parts]),
            torch.cat([p.timestamp for p in parts]),
        )

    def select(self, index: Tensor) -> Interactions:
        """Rows picked by a boolean mask [E] or an index vector [E']."""
        return Interactions(
            self.user[index], self.item[index], self.rating[index], self.timestamp[index]
        )

    def of_users(self, users: Tensor, num_users: int) -> Interactions:
        """Rows whose user is in ``users`` (vectorised membership through a mask [num_users])."""
        member = torch.zeros(num_users, dtype=torch.bool)
        member[users] = True
        return self.select(member[self.user])

    @property
    def edge_index(self) -> Tensor:
        """[2, E] (user, item) pairs."""
        return torch.stack([self.user, self.item])


@attrs.frozen(eq=False)
class ItemContent:
    """Per-item content of one domain, each field of length num_items ('' when missing).

    image: path of the item's image file relative to ``Domain.root`` (None when missing).
    """

    title: tuple[str, ...]
    description: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    image: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.title)


@attrs.frozen(eq=False)
class Domain:
    """One domain of a cross-domain dataset.

    num_users: size of the global user index space (shared with the other domain).
    reviews: review text aligned with ``interactions`` ([E] strings, '' when missing) or None.
    root: directory that image paths in ``items.image`` are relative to.
    clipped_ratings: how many raw ratings were clipped into the declared scale on loading
    (``clip_ratings``); recorded in the manifest's counts.
    """

    name: str
    num_users: int
    item_ids: tuple[str, ...]
    interactions: Interactions
    items: ItemContent
    reviews: tuple[str, ...] | None = None
    root: Path | None = None
    clipped_ratings: int = 0

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def users(self) -> Tensor:
        """Sorted unique global indices of users with at least one interaction here."""
        return torch.unique(self.interactions.user)


@attrs.frozen(eq=False)
class CrossDomainDataset:
    """An auxiliary (source) and a target domain over one shared user index space."""

    name: str
    user_ids: tuple[str, ...]
    source: Domain
    target: Domain

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    def _active(self, domain: Domain) -> Tensor:
        mask = torch.zeros(self.num_users, dtype=torch.bool)
        mask[domain.interactions.user] = True
        return mask

    def overlapping_users(self) -> Tensor:
        """[n] users with interactions in both domains (sorted)."""
        return torch.nonzero(self._active(self.source) & self._active(self.target)).flatten()

    def side_users(self) -> Tensor:
        """[n] target-only users (MuSiC's side users, sorted)."""
        return torch.nonzero(~self._active(self.source) & self._active(self.target)).flatten()

    def source_only_users(self) -> Tensor:
        """[n] auxiliary-only users (sorted)."""
        return torch.nonzero(self._active(self.source) & ~self._active(self.target)).flatten()
