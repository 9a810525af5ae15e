from __future__ import annotations

import torch

from cdr.data.filters import FilterConfig, apply_filters
from cdr.data.records import CrossDomainDataset
from cdr.data.synthetic import SyntheticConfig, generate


def test_no_filters_is_identity(tiny_synthetic: CrossDomainDataset) -> None:
    out, reports = apply_filters(tiny_synthetic, FilterConfig())
    assert out is tiny_synthetic and reports == []


def test_k_core_leaves_every_user_and_item_with_k_edges() -> None:
    ds = generate(SyntheticConfig(size="tiny", images=False, num_users=300))[0]
    out, reports = apply_filters(ds, FilterConfig(k_core=5))
    for domain, before in ((out.source, ds.source), (out.target, ds.target)):
        inter = domain.interactions
        users = torch.bincount(inter.user, minlength=out.num_users)
        items = torch.bincount(inter.item, minlength=domain.num_items)
        assert int(users[users > 0].min()) >= 5 and int(items.min()) >= 5
        report = next(r for r in reports if r.domain == domain.name)
        assert report.removed_interactions == len(before.interactions) - len(inter)
        assert report.removed_items == before.num_items - domain.num_items
    # item content and reviews stay aligned with the compacted indices
    kept = out.target.item_ids
    assert out.target.items.title == tuple(
        ds.target.items.title[ds.target.item_ids.index(i)] for i in kept)
    assert out.target.reviews is not None
    assert len(out.target.reviews) == len(out.target.interactions)


def test_min_user_interactions_and_compaction(tiny_synthetic: CrossDomainDataset) -> None:
    out, reports = apply_filters(tiny_synthetic, FilterConfig(min_user_interactions=8))
    for domain in (out.source, out.target):
        counts = torch.bincount(domain.interactions.user, minlength=out.num_users)
        assert int(counts[counts > 0].min()) >= 8
    active = torch.zeros(out.num_users, dtype=torch.bool)
    active[out.source.interactions.user] = True
    active[out.target.interactions.user] = True
    assert bool(active.all()) and out.num_users < tiny_synthetic.num_users
    assert sum(r.removed_interactions for r in reports) == (
        len(tiny_synthetic.source.interactions) + len(tiny_synthetic.target.interactions)
        - len(out.source.interactions) - len(out.target.interactions))
