"""Vectorised BPR triples (user, positive, negative) with uniformly sampled negatives.

Positives are training edges drawn uniformly; negatives are drawn uniformly from a pool
(the items seen in training, as in MICRec's BPR sum over ``I_s \\ N_u``). A negative that is
one of the user's positives is redrawn, for all of them at once, a few rounds (membership
by binary search over the sorted ``user * I + item`` keys); no Python loop over users.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cdr.data.records import Interactions


class BPRSampler:
    """Triples from one domain's training interactions.

    num_items: the domain's item count; pool: [P] item ids negatives come from (default:
    items with a training edge); generator: the seeded source of all draws (CPU).
    """

    def __init__(
        self,
        train: Interactions,
        num_items: int,
        generator: torch.Generator,
        pool: Tensor | None = None,
        resample_rounds: int = 5,
    ) -> None:
        if len(train) == 0:
            raise ValueError("train: no interactions to sample from")
        self.users = train.user.cpu()
        self.items = train.item.cpu()
        self.num_items = num_items
        self.keys = torch.unique(self.users * num_items + self.items)  # sorted [E']
        self.pool = torch.unique(self.items) if pool is None else pool.cpu()
        self.generator = generator
        self.resample_rounds = resample_rounds

    def __len__(self) -> int:
        return int(self.users.numel())

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """[B] bool: whether (user, item) is a training edge."""
        key = users * self.num_items + items
        pos = torch.searchsorted(self.keys, key).clamp(max=self.keys.numel() - 1)
        return self.keys[pos] == key

    def negatives(self, users: Tensor) -> Tensor:
        """[B] uniform pool items, redrawn (vectorised) where they are the user's positives."""
        draw = torch.randint(self.pool.numel(), (users.numel(),), generator=self.generator)
        neg = self.pool[draw]
        for _ in range(self.resample_rounds):
            clash = self.is_positive(users, neg)
            n = int(clash.sum())
            if n == 0:
                break
            neg[clash] = self.pool[torch.randint(self.pool.numel(), (n,), generator=self.generator)]
        return neg

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(users, positives, negatives)``, each [B], edges drawn with replacement."""
        edges = torch.randint(len(self), (batch_size,), generator=self.generator)
        users, pos = self.users[edges], self.items[edges]
        return users, pos, self.negatives(users)

    def epoch(self, batch_size: int) -> list[tuple[Tensor, Tensor, Tensor]]:
        """One pass over the edges in a random order, cut into batches of ``batch_size``."""
        order = torch.randperm(len(self), generator=self.generator)
        users, pos = self.users[order], self.items[order]
        neg = self.negatives(users)
        return [
            (users[s : s + batch_size], pos[s : s + batch_size], neg[s : s + batch_size])
            for s in range(0, len(self), batch_size)
        ]
