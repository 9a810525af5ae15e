"""Template selection rankings (INMO)."""

from __future__ import annotations

import pytest
import torch

from cdr.backbones.templates import node_scores, select_templates

EDGES = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 1, 2, 0, 0, 1]])  # user 3, item 3: untrained


def test_sort_is_inverse_degree_sum() -> None:
    users, items = node_scores(EDGES, 4, 4, "sort")
    # item degrees: 0 -> 3, 1 -> 2, 2 -> 1; user degrees 3, 1, 2
    assert users[:3].tolist() == pytest.approx([1 / 3 + 1 / 2 + 1, 1 / 3, 1 / 3 + 1 / 2])
    assert items[:3].tolist() == pytest.approx([1 / 3 + 1 + 1 / 2, 1 / 3 + 1 / 2, 1 / 3])
    assert users[3] == -torch.inf and items[3] == -torch.inf


@pytest.mark.parametrize("ranking", ["sort", "degree", "random"])
def test_ratio_counts_trained_nodes_only(ranking: str) -> None:
    users, items = select_templates(EDGES, 4, 4, ranking, ratio=1.0)
    assert users.tolist() == [True, True, True, False]
    assert items.tolist() == [True, True, True, False]
    users, _ = select_templates(EDGES, 4, 4, ranking, ratio=0.34)
    assert int(users.sum()) == 2 and not users[3]


def test_degree_ranking_keeps_the_busiest() -> None:
    users, items = select_templates(EDGES, 4, 4, "degree", ratio=0.3)
    assert users.tolist() == [True, False, False, False]
    assert items.tolist() == [True, False, False, False]
