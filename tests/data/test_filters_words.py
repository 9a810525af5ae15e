"""The review-length filter counts words as ``str.split()`` does, and stops counting early.

Reference: the number of maximal runs of non-whitespace characters (``\\S+``; ``re``'s
``\\s`` is ``str.isspace()`` for str patterns), on texts mixing every kind of whitespace,
counted in full.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from cdr.data.filters import _review_words

WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2000\u3000"
texts = st.text(alphabet=st.sampled_from(["a", "é", "x", *WHITESPACE]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(reviews=st.lists(texts, max_size=12), n=st.integers(1, 12))
def test_at_least_n_words_as_runs_of_non_space(reviews: list[str], n: int) -> None:
    expected = [len(re.findall(r"\S+", r)) >= n for r in reviews]
    assert _review_words(tuple(reviews), n).tolist() == expected


def test_hand_cases() -> None:
    reviews = ("", "   ", "one", " one two ", "a\tb\nc", "a  b  c  ")
    assert _review_words(reviews, 1).tolist() == [False, False, True, True, True, True]
    assert _review_words(reviews, 3).tolist() == [False, False, False, False, True, True]
    assert _review_words(reviews, 4).tolist() == [False] * 6
