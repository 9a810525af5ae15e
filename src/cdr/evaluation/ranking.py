"""Full-ranking evaluation of a scoring function over a set of users, one user batch at a time.

``score_fn`` maps global user ids [B] to scores over all items [B, num_items]; the users'
``exclude`` interactions are masked to ``-inf``; ``relevant`` interactions give the gains
(rating if ``graded`` else 1). Metric definitions and tie-breaking: ``cdr.metrics.ranking``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import attrs
import torch
from torch import Tensor

from cdr.data.records import Interactions
from cdr.metrics.ranking import mean_over_users, metrics_from_top_k, top_k_items

ScoreFn = Callable[[Tensor], Tensor]
"""Global user ids [B] -> scores [B, num_items]."""


def _check_per_user(instance: RankingResult, _: attrs.Attribute[object], value: object) -> None:
    assert isinstance(value, Mapping)
    for name, column in value.items():
        if column.shape != instance.users.shape:
            raise ValueError(
                f"per_user[{name!r}]: shape {tuple(column.shape)} does not match users "
                f"{tuple(instance.users.shape)}"
            )


@attrs.frozen(eq=False)
class RankingResult:
    """Per-user metric values of one evaluated set of users (ranking or rating metrics).

    users: [U'] int64 global user ids (sorted) that were evaluated, i.e. those with at least
    one relevant item; per_user: metric name ("ndcg@20", "precision@20", "recall@20",
    "hit@20", ...) -> [U'] float64 values aligned with ``users``.
    """

    users: Tensor
    per_user: Mapping[str, Tensor] = attrs.field(validator=_check_per_user)

    def summary(self) -> dict[str, float]:
        """Mean of each metric over the evaluated users (NaN when there are none)."""
        return {name: mean_over_users(values) for name, values in self.per_user.items()}

    def select(self, mask: Tensor) -> RankingResult:
        """The users picked by a boolean mask [U'] (or an index vector)."""
        return RankingResult(self.users[mask], {k: v[mask] for k, v in self.per_user.items()})

    def __len__(self) -> int:
        return int(self.users.numel())


@attrs.frozen(eq=False)
class RowLookup:
    """Interactions of ``users`` grouped by the users' rows, for building dense batch rows.

    users: [U] sorted unique global ids; rows/items/values: [E'] interactions of those users
    sorted by row; ``ptr``: [U + 1] so row r owns entries ``ptr[r]:ptr[r+1]``.
    """

    rows: Tensor
    items: Tensor
    values: Tensor
    ptr: Tensor

    @classmethod
    def build(cls, users: Tensor, inter: Interactions, values: Tensor) -> RowLookup:
        """Index ``inter`` (values [E] aligned with it) by position in sorted ``users``."""
        users = users.cpu()
        if users.numel() == 0:
            empty = torch.empty(0, dtype=torch.long)
            return cls(empty, empty, values[:0].cpu(), torch.zeros(1, dtype=torch.long))
        pos = torch.searchsorted(users, inter.user.cpu()).clamp_max(users.numel() - 1)  # [E]
        keep = users[pos] == inter.user.cpu()
        rows, order = torch.sort(pos[keep], stable=True)
        items = inter.item.cpu()[keep][order]
        vals = values.cpu()[keep][order]
        ptr = torch.searchsorted(rows, torch.arange(users.numel() + 1))
        return cls(rows, items, vals, ptr)

    def span(self, start: int, end: int) -> tuple[Tensor, Tensor, Tensor]:
        """(rows relative to ``start``, items, values) of rows ``start:end``."""
        lo, hi = int(self.ptr[start]), int(self.ptr[min(end, self.ptr.numel() - 1)])
        return self.rows[lo:hi] - start, self.items[lo:hi], self.values[lo:hi]

    def dense(self, start: int, end: int, num_items: int, device: torch.device) -> Tensor:
        """[end - start, num_items] float32 values (0 elsewhere; duplicates keep the max)."""
        rows, items, vals = self.span(start, end)
        out = torch.zeros((end - start) * num_items, dtype=torch.float32, device=device)
        flat = (rows * num_items + items).to(device)
        out.scatter_reduce_(0, flat, vals.to(device, torch.float32), reduce="amax")
        return out.view(end - start, num_items)

    def mask_(self, scores: Tensor, start: int, value: float = -math.inf) -> Tensor:
        """Set ``scores`` [B, I] (rows ``start:start+B``) to ``value`` at these interactions."""
        rows, items, _ = self.span(start, start + scores.shape[0])
        scores[rows.to(scores.device), items.to(scores.device)] = value
        return scores


def users_with_relevant(users: Tensor, relevant: Interactions, graded: bool) -> Tensor:
    """Sorted unique ``users`` having at least one relevant interaction (rating > 0 if graded)."""
    users = torch.unique(users.cpu())
    inter_users = relevant.user.cpu()
    if graded:
        inter_users = inter_users[relevant.rating.cpu() > 0]
    return users[torch.isin(users, inter_users)]


def ranked_batches(
    score_fn: ScoreFn,
    users: Tensor,
    num_items: int,
    exclude: RowLookup | None,
    depth: int,
    batch_size: int,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(start, scores [B, I] with exclusions at -inf, top items [B, min(depth, I)])``.

    Rows are positions in ``users`` (sorted unique global ids); batches of ``batch_size``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    for start in range(0, users.numel(), batch_size):
        batch = users[start : start + batch_size]  # [B]
        with torch.no_grad():
            raw = score_fn(batch)
        if raw.shape != (batch.numel(), num_items):
            raise ValueError(
                f"score_fn returned {tuple(raw.shape)} for {batch.numel()} users; "
                f"expected ({batch.numel()}, {num_items})"
            )
        scores = raw.detach().to(torch.float32, copy=True)  # [B, I], ours to mask
        if exclude is not None:
            exclude.mask_(scores, start)
        yield start, scores, top_k_items(scores, depth)


def evaluate_ranking(
    score_fn: ScoreFn,
    users: Tensor,
    num_items: int,
    relevant: Interactions,
    exclude: Interactions | None = None,
    *,
    ks: Sequence[int] = (20,),
    graded: bool = False,
    batch_size: int = 1024,
) -> RankingResult:
    """Rank all ``num_items`` items for each user and score the top ks against ``relevant``.

    score_fn: global user ids [B] -> scores [B, num_items]; users: [U] global ids to evaluate
    (duplicates dropped; those without a relevant interaction are skipped); relevant: the held
    out interactions (gain = rating if ``graded`` else 1); exclude: interactions masked to
    ``-inf`` before ranking (e.g. training ones). Keys: ``ndcg@k``, ``precision@k``,
    ``recall@k``, ``hit@k`` for each k in ``ks``.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be positive cut-offs, got {ks}")
    kept = users_with_relevant(users, relevant, graded)  # [U']
    gains = relevant.rating if graded else torch.ones_like(relevant.rating)
    rel = RowLookup.build(kept, relevant, gains)
    excl = None
    if exclude is not None:
        excl = RowLookup.build(kept, exclude, torch.ones_like(exclude.rating))
    parts: list[dict[str, Tensor]] = []
    for start, scores, top in ranked_batches(score_fn, kept, num_items, excl, max(ks), batch_size):
        relevance = rel.dense(start, start + scores.shape[0], num_items, scores.device)
        parts.append(
            {k: v.cpu() for k, v in metrics_from_top_k(scores, top, relevance, ks).items()}
        )
    names = [f"{m}@{k}" for k in ks for m in ("ndcg", "precision", "recall", "hit")]
    per_user = {
        name: torch.cat([p[name] for p in parts]) if parts else torch.empty(0, dtype=torch.float64)
        for name in names
    }
    return RankingResult(kept, per_user)
