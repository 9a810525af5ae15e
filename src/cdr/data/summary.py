"""Counts that describe a cross-domain dataset (the manifest's ``counts``, the CLI table)."""

from __future__ import annotations

from typing import Any

from cdr.data.records import CrossDomainDataset, Domain


def domain_counts(domain: Domain) -> dict[str, Any]:
    """Users with interactions, items, interactions and sparsity (1 - density) of a domain."""
    users = int(domain.users().numel())
    items = domain.num_items
    edges = len(domain.interactions)
    density = edges / (users * items) if users and items else 0.0
    ratings = domain.interactions.rating
    return {
        "name": domain.name,
        "users": users,
        "items": items,
        "interactions": edges,
        "sparsity": 1.0 - density,
        "mean_rating": float(ratings.mean()) if edges else 0.0,
        "with_reviews": domain.reviews is not None,
        "items_with_image": sum(1 for i in domain.items.image if i is not None),
        "clipped_ratings": domain.clipped_ratings,
    }


def summarize(dataset: CrossDomainDataset) -> dict[str, Any]:
    """Per-domain counts plus overlapping / side (target-only) / auxiliary-only users."""
    return {
        "users": dataset.num_users,
        "overlapping_users": int(dataset.overlapping_users().numel()),
        "side_users": int(dataset.side_users().numel()),
        "source_only_users": int(dataset.source_only_users().numel()),
        "source": domain_counts(dataset.source),
        "target": domain_counts(dataset.target),
    }
