"""The papers' dataset filters, each reporting how many rows it removed.

MuSiC (section 4.1.1) drops reviews shorter than 10 words, items without a description or
an image, and users with fewer than 20 reviews; MICRec/INMO use k-core filtering and treat
ratings >= r as implicit positives. Filters run per domain in a fixed order (reviews, items,
implicit, users, k-core); afterwards users left without any interaction are dropped and the
global user index is compacted (relative order kept).
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
from torch import Tensor

from cdr.config.validators import in_range, non_negative
from cdr.data.records import CrossDomainDataset, Domain, ItemContent
from cdr.data.validate import check_usable

__all__ = ["FilterConfig", "FilterReport", "apply_filters", "check_usable", "compact_users",
           "restrict"]


@attrs.frozen
class FilterConfig:
    """Which filters to apply (all off by default).

    min_review_words: drop interactions whose review has fewer words (MuSiC: 10).
    require_description / require_image: drop items without one (and their interactions).
    min_user_interactions: drop a user's interactions in a domain where they have fewer.
    k_core: repeat until every user and item of a domain has at least k interactions.
    min_rating: keep ratings >= r as implicit positives (rating set to 1.0); None keeps all.
    """

    min_review_words: int = attrs.field(default=0, validator=non_negative)
    require_description: bool = False
    require_image: bool = False
    min_user_interactions: int = attrs.field(default=0, validator=non_negative)
    k_core: int = attrs.field(default=0, validator=non_negative)
    min_rating: float | None = attrs.field(default=None, validator=in_range(0.0, 5.0))

    @property
    def active(self) -> bool:
        return self != FilterConfig()


@attrs.frozen
class FilterReport:
    """What one filter removed from one domain."""

    filter: str
    domain: str
    removed_interactions: int
    removed_items: int = 0

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def restrict(domain: Domain, keep_rows: Tensor, keep_items: Tensor | None = None) -> Domain:
    """The domain with interactions ``keep_rows`` ([E] bool) and items ``keep_items`` ([I] bool;
    interactions of dropped items are dropped too); item indices are compacted."""
    inter = domain.interactions
    if keep_items is not None:
        keep_rows = keep_rows & keep_items[inter.item]
    rows = torch.nonzero(keep_rows).flatten()
    selected = inter.select(rows)
    reviews = domain.reviews
    if reviews is not None:
        picked = rows.tolist()
        reviews = tuple([reviews[r] for r in picked])  # a list first: twice as fast
    if keep_items is None:
        return attrs.evolve(domain, interactions=selected, reviews=reviews)
    new_index = torch.cumsum(keep_items.long(), 0) - 1  # [I] old -> new item index
    kept = torch.nonzero(keep_items).flatten().tolist()
    items = domain.items
    content = ItemContent(
        title=tuple([items.title[i] for i in kept]),
        description=tuple([items.description[i] for i in kept]),
        categories=tuple([items.categories[i] for i in kept]),
        image=tuple([items.image[i] for i in kept]),
    )
    selected = attrs.evolve(selected, item=new_index[selected.item])
    return attrs.evolve(
        domain,
        item_ids=tuple([domain.item_ids[i] for i in kept]),
        interactions=selected,
        items=content,
        reviews=reviews,
    )


def _counts(index: Tensor, size: int) -> Tensor:
    return torch.bincount(index, minlength=size)


def _review_words(reviews: tuple[str, ...], n: int) -> Tensor:
    """[E] bool: review has at least ``n`` words (``n`` >= 1). Splitting stops after ``n``
    pieces: the last piece is the non-empty rest when there are more words."""
    enough = np.fromiter((len(r.split(None, n - 1)) >= n for r in reviews), dtype=bool,
                         count=len(reviews))
    return torch.from_numpy(enough)


def _filter_domain(domain: Domain, cfg: FilterConfig) -> tuple[Domain, list[FilterReport]]:
    reports: list[FilterReport] = []

    def step(name: str, new: Domain) -> Domain:
        reports.append(FilterReport(
            name, domain.name,
            len(current.interactions) - len(new.interactions),
            current.num_items - new.num_items,
        ))
        return new

    current = domain
    if cfg.min_review_words and current.reviews is not None:
        keep = _review_words(current.reviews, cfg.min_review_words)
        current = step(f"reviews >= {cfg.min_review_words} words", restrict(current, keep))
    if cfg.require_description:
        has = torch.tensor([bool(d.strip()) for d in current.items.description], dtype=torch.bool)
        rows = torch.ones(len(current.interactions), dtype=torch.bool)
        current = step("items with a description", restrict(current, rows, has))
    if cfg.require_image:
        has = torch.tensor([i is not None for i in current.items.image], dtype=torch.bool)
        rows = torch.ones(len(current.interactions), dtype=torch.bool)
        current = step("items with an image", restrict(current, rows, has))
    if cfg.min_rating is not None:
        inter = current.interactions
        kept = restrict(current, inter.rating >= cfg.min_rating)
        kept = attrs.evolve(kept, interactions=attrs.evolve(
            kept.interactions, rating=torch.ones(len(kept.interactions))))
        current = step(f"rating >= {cfg.min_rating:g} (implicit)", kept)
    if cfg.min_user_interactions:
        inter = current.interactions
        per_user = _counts(inter.user, current.num_users)
        keep = per_user[inter.user] >= cfg.min_user_interactions
        current = step(f"users with >= {cfg.min_user_interactions} interactions",
                       restrict(current, keep))
    if cfg.k_core:
        start = current
        while True:
            inter = current.interactions
            per_user = _counts(inter.user, current.num_users)
            per_item = _counts(inter.item, current.num_items)
            keep_items = per_item >= cfg.k_core
            keep_rows = per_user[inter.user] >= cfg.k_core
            if bool(keep_items.all()) and bool(keep_rows.all()):
                break
            current = restrict(current, keep_rows, keep_items)
        reports.append(FilterReport(
            f"{cfg.k_core}-core", domain.name,
            len(start.interactions) - len(current.interactions),
            start.num_items - current.num_items,
        ))
    return current, reports


def compact_users(dataset: CrossDomainDataset) -> CrossDomainDataset:
    """Drop users without interactions in either domain; keeps the order of the rest."""
    active = torch.zeros(dataset.num_users, dtype=torch.bool)
    active[dataset.source.interactions.user] = True
    active[dataset.target.interactions.user] = True
    if bool(active.all()):
        return dataset
    new_index = torch.cumsum(active.long(), 0) - 1
    kept = torch.nonzero(active).flatten().tolist()
    num_users = len(kept)

    def remap(domain: Domain) -> Domain:
        inter = domain.interactions
        return attrs.evolve(domain, num_users=num_users,
                            interactions=attrs.evolve(inter, user=new_index[inter.user]))

    return attrs.evolve(
        dataset,
        user_ids=tuple(dataset.user_ids[u] for u in kept),
        source=remap(dataset.source),
        target=remap(dataset.target),
    )


def apply_filters(
    dataset: CrossDomainDataset, cfg: FilterConfig
) -> tuple[CrossDomainDataset, list[FilterReport]]:
    """Apply ``cfg`` to both domains; returns the filtered dataset and one report per filter."""
    if not cfg.active:
        return dataset, []
    source, src_reports = _filter_domain(dataset.source, cfg)
    target, tgt_reports = _filter_domain(dataset.target, cfg)
    out = compact_users(attrs.evolve(dataset, source=source, target=target))
    check_usable(out)
    return out, src_reports + tgt_reports
