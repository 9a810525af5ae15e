"""Text fed to text encoders: item content and users' review histories, through templates.

Item fields available to a template: ``{title}``, ``{description}``, ``{categories}``
(comma-separated). User field: ``{reviews}``, the user's review texts, most recent first
(by interaction timestamp; ties by position), at most ``max_reviews`` of them, each cut to
``review_chars`` characters, one per line. Encoders further truncate to their token limit,
which then drops the oldest reviews first. Users without any non-empty review get no text
(a zero feature row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cdr.data.records import Domain
from cdr.errors import ConfigError

ITEM_FIELDS = ("title", "description", "categories")
USER_FIELDS = ("reviews",)


def check_template(template: str, fields: Sequence[str], where: str) -> None:
    """Fail early (ConfigError naming ``where``) on a template with unknown fields."""
    try:
        template.format(**{f: "" for f in fields})
    except (KeyError, IndexError, ValueError) as exc:
        allowed = ", ".join("{" + f + "}" for f in fields)
        raise ConfigError(f"{where}: bad template ({exc!r}); fields: {allowed}") from exc


def item_texts(domain: Domain, template: str) -> list[str | None]:
    """One filled template per item; None for items with no title, description or categories."""
    items = domain.items
    out: list[str | None] = []
    for title, description, categories in zip(
        items.title, items.description, items.categories, strict=True
    ):
        if not (title or description or categories):
            out.append(None)
            continue
        text = template.format(
            title=title, description=description, categories=", ".join(categories)
        )
        out.append(text)
    return out


def user_reviews(domain: Domain, max_reviews: int, review_chars: int) -> list[list[str]]:
    """Each user's non-empty reviews, most recent first, at most ``max_reviews`` [num_users]."""
    reviews = domain.reviews or ()
    inter = domain.interactions
    histories: list[list[str]] = [[] for _ in range(domain.num_users)]
    if not reviews:
        return histories
    # Order rows by (user, newest first) once, vectorised; then one pass fills the lists.
    users = inter.user.numpy()
    order = np.lexsort((np.arange(len(inter)), -inter.timestamp.numpy(), users))
    for row in order.tolist():
        text = reviews[row].strip()
        history = histories[users[row]]
        if text and len(history) < max_reviews:
            history.append(text[:review_chars])
    return histories


def user_texts(
    domain: Domain, template: str, max_reviews: int, review_chars: int
) -> list[str | None]:
    """One filled template per user of the global index; None for users without reviews."""
    return [
        template.format(reviews="\n".join(history)) if history else None
        for history in user_reviews(domain, max_reviews, review_chars)
    ]
