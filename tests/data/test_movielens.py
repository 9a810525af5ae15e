from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdr.data.movielens import MovieLensGenresConfig, MovieLensGenresProvider, bundled_ml100k
from cdr.data.store import build_dataset, read_manifest
from cdr.errors import DataError
from cdr.registry import Registry

ML100K = bundled_ml100k()
pytestmark = pytest.mark.skipif(ML100K is None, reason="pip install --no-deps recbole")


def test_default_comedy_to_drama_split(tmp_path: Path) -> None:
    path = build_dataset(MovieLensGenresConfig(), Registry(), cache_root=tmp_path)
    counts = read_manifest(path)["counts"]
    assert counts["users"] == 943
    assert counts["source"]["name"] == "comedy" and counts["target"]["name"] == "drama"
    # 505 Comedy and 725 Drama films; the 89 in both go to the target domain
    assert counts["target"]["items"] == 725
    assert counts["source"]["items"] == 505 - 89
    assert counts["overlapping_users"] == 939
    total = counts["source"]["interactions"] + counts["target"]["interactions"]
    assert 60_000 < total < 100_000


def test_item_text_is_title_year_genres() -> None:
    ds = MovieLensGenresProvider(MovieLensGenresConfig()).load()
    i = ds.source.item_ids.index("1")  # Toy Story: Animation Children's Comedy
    assert ds.source.items.title[i] == "Toy Story (1995)"
    assert ds.source.items.description[i] == \
        "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert ds.source.items.categories[i] == ("Animation", "Children's", "Comedy")
    assert set(ds.source.items.image) == {None} and ds.source.reviews is None


@pytest.mark.parametrize("rule", ["source", "drop", "hash"])
def test_rules_for_items_in_both_genre_sets(rule: str) -> None:
    ds = MovieLensGenresProvider(MovieLensGenresConfig(both=rule)).load()
    both = {"source": (505, 725 - 89), "drop": (505 - 89, 725 - 89)}
    if rule in both:
        assert (ds.source.num_items, ds.target.num_items) == both[rule]
    else:
        assert ds.source.num_items + ds.target.num_items == 505 + 725 - 89
        assert ds.source.num_items > 505 - 89 and ds.target.num_items > 725 - 89
    assert not set(ds.source.item_ids) & set(ds.target.item_ids)


def test_user_directory_and_unknown_genre(tmp_path: Path) -> None:
    assert ML100K is not None
    for name in ("ml-100k.inter", "ml-100k.item"):
        shutil.copy(ML100K / name, tmp_path / name)
    ds = MovieLensGenresProvider(MovieLensGenresConfig(
        directory=str(tmp_path), source_genres=("Action", "Adventure"),
        target_genres=("Sci-Fi",))).load()
    assert ds.source.name == "action+adventure"
    with pytest.raises(DataError, match="has no interactions"):
        MovieLensGenresProvider(MovieLensGenresConfig(target_genres=("Cartoon",))).load()
