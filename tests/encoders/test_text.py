from __future__ import annotations

import attrs
import pytest
import torch
from support import tiny_domain

from cdr.data.records import Interactions
from cdr.encoders.text import check_template, item_texts, user_reviews, user_texts
from cdr.errors import ConfigError


def test_item_texts_fill_the_template_and_skip_empty_items() -> None:
    domain = tiny_domain("books", 2, [0], [0], 3)
    items = attrs.evolve(
        domain.items,
        title=("Dune", "", ""),
        categories=(("sci-fi", "classic"), (), ("x",)),
        description=("desert", "", ""),
    )
    texts = item_texts(attrs.evolve(domain, items=items), "{title}|{description}|{categories}")
    assert texts == ["Dune|desert|sci-fi, classic", None, "||x"]


def test_user_reviews_newest_first_capped_and_cut() -> None:
    domain = tiny_domain("books", 3, [0, 0, 0, 1], [0, 1, 2, 0], 3)
    inter = Interactions(
        domain.interactions.user,
        domain.interactions.item,
        torch.ones(4),
        torch.tensor([5, 9, 7, 1]),
    )
    reviews = ("old one", "newest", "middle", "")
    domain = attrs.evolve(domain, interactions=inter, reviews=reviews)
    assert user_reviews(domain, max_reviews=2, review_chars=3) == [["new", "mid"], [], []]
    assert user_texts(domain, "R: {reviews}", 5, 100) == ["R: newest\nmiddle\nold one", None, None]


def test_bad_template_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"^item_prompt: bad template"):
        check_template("{title} {price}", ("title",), "item_prompt")
