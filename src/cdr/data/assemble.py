"""Raw string-keyed records -> the indexed ``CrossDomainDataset`` every layer consumes.

Loaders (RecBole atomic files, Amazon reviews) parse into one ``RawDomain`` per domain: the
interactions as parallel columns keyed by string ids, plus the item content they know. The
global user index is the sorted union of both domains' user ids and each domain's item
index the sorted set of its interacted item ids, so the same files always give the same
indices on any machine. Loaders validate every raw value (``cdr.data.validate``) before it
gets here; ``assemble`` refuses a dataset a domain of which cannot be trained or ranked on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np
import torch

from cdr.data.records import CrossDomainDataset, Domain, Interactions, ItemContent
from cdr.data.validate import check_usable
from cdr.errors import DataError


@attrs.frozen
class ItemMeta:
    """Content of one item as read from a metadata file ('' / () / None when missing)."""

    title: str = ""
    description: str = ""
    categories: tuple[str, ...] = ()
    image: str | None = None


@attrs.frozen(eq=False)
class RawDomain:
    """One domain's interactions keyed by string ids (all columns of length E).

    reviews: [E] review texts ('' when missing) or None when the source has no reviews.
    items: content per item id (ids missing here get empty content).
    root: directory that ``ItemMeta.image`` paths are relative to.
    clipped: how many ratings the loader clipped into the declared scale.
    """

    name: str
    user_ids: Sequence[str]
    item_ids: Sequence[str]
    ratings: np.ndarray
    timestamps: np.ndarray
    reviews: Sequence[str] | None
    items: Mapping[str, ItemMeta]
    root: Path | None = None
    clipped: int = 0

    def __len__(self) -> int:
        return len(self.user_ids)


def _dedupe(user: np.ndarray, item: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Indices of rows to keep: one per (user, item) pair, the latest (then the last read)."""
    order = np.lexsort((np.arange(len(user)), timestamp, item, user))
    u, i = user[order], item[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return np.sort(order[last])


def _domain(dataset: str, role: str, raw: RawDomain, user: np.ndarray,
            num_users: int) -> Domain:
    """Index one domain; ``user`` [E] holds the rows' global user indices."""
    if len(raw) == 0:
        raise DataError(f"dataset {dataset!r}: {role} domain {raw.name!r} has no interactions",
                        hint="check the input files and the dataset config")
    item_ids, item = np.unique(np.asarray(raw.item_ids, dtype=object).astype(str),
                               return_inverse=True)
    timestamp = np.asarray(raw.timestamps, dtype=np.int64)
    keep = _dedupe(user, item, timestamp)
    metas = [raw.items.get(str(i), ItemMeta()) for i in item_ids]
    content = ItemContent(
        title=tuple(m.title for m in metas),
        description=tuple(m.description for m in metas),
        categories=tuple(tuple(m.categories) for m in metas),
        image=tuple(m.image for m in metas),
    )
    inter = Interactions(
        torch.from_numpy(user[keep].astype(np.int64)),
        torch.from_numpy(item[keep].astype(np.int64)),
        torch.from_numpy(np.asarray(raw.ratings, dtype=np.float32)[keep]),
        torch.from_numpy(timestamp[keep]),
    )
    reviews = None
    if raw.reviews is not None:
        texts = np.asarray(raw.reviews, dtype=object)[keep]
        reviews = tuple(str(t) for t in texts)
    return Domain(raw.name, num_users, tuple(str(i) for i in item_ids), inter, content,
                  reviews, raw.root, raw.clipped)


def assemble(name: str, source: RawDomain, target: RawDomain) -> CrossDomainDataset:
    """Index both domains over one sorted global user list; duplicates keep the latest row.

    DataError (naming the dataset and domain) when a domain is empty or has fewer than
    ``validate.MIN_ITEMS`` items.
    """
    src_users = np.asarray(source.user_ids, dtype=object).astype(str)
    tgt_users = np.asarray(target.user_ids, dtype=object).astype(str)
    user_ids, inverse = np.unique(np.concatenate([src_users, tgt_users]), return_inverse=True)
    inverse = inverse.reshape(-1)
    num_users = len(user_ids)
    src = _domain(name, "source", source, inverse[: len(src_users)], num_users)
    tgt = _domain(name, "target", target, inverse[len(src_users):], num_users)
    dataset = CrossDomainDataset(name, tuple(str(u) for u in user_ids), src, tgt)
    check_usable(dataset, structure=True)
    return dataset
