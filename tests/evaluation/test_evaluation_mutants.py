"""Tests that kill surviving mutants of cdr.evaluation (docs/testing.md): argument checks and
their messages, the tail size, validation vs test masking, ungraded relevance, empty inputs,
and that scoring never writes into the caller's score tensor."""

from __future__ import annotations

import re

import pytest
import torch

from cdr.data.records import Interactions
from cdr.data.splits import DomainInductiveSplit
from cdr.evaluation.inductive import TAIL, evaluate_inductive, slice_name, tail_items
from cdr.evaluation.ranking import evaluate_ranking, users_with_relevant


def _inter(users: list[int], items: list[int], ratings: list[float] | None = None) -> Interactions:
    n = len(users)
    rating = torch.ones(n) if ratings is None else torch.tensor(ratings)
    return Interactions(
        torch.tensor(users, dtype=torch.long), torch.tensor(items, dtype=torch.long), rating,
        torch.zeros(n, dtype=torch.long),
    )


def _split(test: Interactions | None = None) -> DomainInductiveSplit:
    """6 users (5 unseen), 6 items (5 unseen); val and test edges on users 0-2; E_new: the
    edges of unseen user 5 and of unseen item 5."""
    return DomainInductiveSplit(
        unseen_users=torch.tensor([5]),
        unseen_items=torch.tensor([5]),
        train=_inter([0, 1, 2, 3], [0, 1, 2, 3]),
        val=_inter([0, 1, 2], [4, 4, 3]),
        test=_inter([0, 1, 2], [1, 2, 4]) if test is None else test,
        new=_inter([5, 0], [0, 5]),
    )


def _scores(u: torch.Tensor) -> torch.Tensor:
    return torch.arange(6, dtype=torch.float32).repeat(len(u), 1)  # item 5 first


def _raises(message: str) -> pytest.RaisesExc[ValueError]:
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def test_cut_offs_are_checked_with_their_message() -> None:
    relevant = _inter([0], [1])
    for ks in ((), (0,), (3, 0)):
        with _raises(f"ks must be positive cut-offs, got {list(ks)}"):
            evaluate_ranking(_scores, torch.tensor([0]), 6, relevant, ks=ks)
        with _raises(f"ks must be positive cut-offs, got {list(ks)}"):
            evaluate_inductive(_scores, _split(), 6, 6, ks=ks)
    ones = evaluate_inductive(_scores, _split(), 6, 6, ks=(1,))  # k = 1 is a valid cut-off
    assert set(ones["all-users/all-items"].per_user) == {
        "ndcg@1", "precision@1", "recall@1", "hit@1"
    }


def test_user_ids_beyond_num_users_are_refused() -> None:
    test = _inter([0, 4, 6], [1, 2, 3])
    with _raises("user id 6 >= num_users 6"):
        evaluate_inductive(_scores, _split(test), 6, 6)
    fine = evaluate_inductive(_scores, _split(_inter([0, 4, 5], [1, 2, 3])), 6, 6)
    assert fine["all-users/all-items"].users.tolist() == [0, 4, 5]


def test_tail_size_and_fraction_bounds() -> None:
    split = _split()
    assert tail_items(split, 6, 0.01).tolist() == [4]  # floor(0.06) = 0 -> at least 1 item
    assert tail_items(split, 6, 1.0).tolist() == list(range(6))  # 1 is allowed
    for bad in (0.0, 1.5, -0.2):
        with _raises(f"fraction must be in (0, 1], got {bad}"):
            tail_items(split, 6, bad)


def test_tail_by_is_passed_to_the_tail_slice() -> None:
    split = _split(_inter([0, 1, 2], [5, 0, 4]))
    by_train = evaluate_inductive(_scores, split, 6, 6, tail_fraction=0.2, tail_by="train")
    observed = evaluate_inductive(_scores, split, 6, 6, tail_fraction=0.2)
    # counts by train: 1 1 1 1 0 0; observed (+ E_new): 2 1 1 1 0 1
    assert tail_items(split, 6, 0.2, by="train").tolist() == [4]
    assert tail_items(split, 6, 0.2).tolist() == [4]
    assert by_train[TAIL].users.tolist() == observed[TAIL].users.tolist() == [2]
    tail_train = tail_items(split, 6, 0.4, by="train").tolist()
    tail_observed = tail_items(split, 6, 0.4).tolist()
    assert tail_train != tail_observed
    a = evaluate_inductive(_scores, split, 6, 6, tail_fraction=0.4, tail_by="train")
    b = evaluate_inductive(_scores, split, 6, 6, tail_fraction=0.4)
    assert a[TAIL].users.tolist() != b[TAIL].users.tolist()


def test_validation_edges_are_masked_at_test_only() -> None:
    """Scores put each user's validation item first: on "val" it is a hit at 1; on "test"
    it is masked, so the test item ranked next is the hit."""
    split = _split()
    val_item = {0: 4, 1: 4, 2: 3}
    test_item = {0: 1, 1: 2, 2: 4}

    def oracle(u: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(len(u), 6)
        for row, user in enumerate(u.tolist()):
            scores[row, val_item[user]] = 2.0
            scores[row, test_item[user]] = 1.0
        return scores

    on_val = evaluate_inductive(oracle, split, 6, 6, ks=(1,), on="val")
    assert on_val[slice_name("all", "all")].per_user["hit@1"].tolist() == [1.0, 1.0, 1.0]
    on_test = evaluate_inductive(oracle, split, 6, 6, ks=(1,))
    hits = on_test[slice_name("all", "all")].per_user["hit@1"].tolist()
    assert hits == [1.0, 1.0, 1.0]  # unmasked, the val item (score 2) would take rank 1


def test_ungraded_relevance_keeps_zero_rated_edges_graded_drops_them() -> None:
    relevant = _inter([0, 1], [1, 2], [0.0, 3.0])
    default = evaluate_ranking(_scores, torch.tensor([0, 1]), 6, relevant)
    assert default.users.tolist() == [0, 1]
    graded = evaluate_ranking(_scores, torch.tensor([0, 1]), 6, relevant, graded=True)
    assert graded.users.tolist() == [1]
    assert users_with_relevant(torch.tensor([1, 0, 1]), relevant, graded=True).tolist() == [1]
    split = _split(_inter([0, 1, 2], [1, 2, 4], [0.0, 0.0, 1.0]))
    assert evaluate_inductive(_scores, split, 6, 6)["all-users/all-items"].users.tolist() == [
        0, 1, 2
    ]


def test_no_users_give_empty_float64_results() -> None:
    empty = evaluate_ranking(_scores, torch.tensor([], dtype=torch.long), 6, _inter([0], [1]))
    assert len(empty) == 0
    assert {v.shape for v in empty.per_user.values()} == {(0,)}
    assert {v.dtype for v in empty.per_user.values()} == {torch.float64}
    split = _split(_inter([], []))
    results = evaluate_inductive(_scores, split, 6, 6, ks=(2,))
    for result in results.values():
        assert len(result) == 0 and set(result.per_user) == {
            "ndcg@2", "precision@2", "recall@2", "hit@2"
        }
        assert {v.dtype for v in result.per_user.values()} <= {torch.float64}


def test_scores_of_the_caller_are_not_masked_in_place() -> None:
    matrix = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    before = matrix.clone()
    evaluate_ranking(
        lambda u: matrix[int(u.min()) : int(u.max()) + 1],  # a view of the caller's tensor
        torch.tensor([0, 1]),
        6,
        _inter([0, 1], [1, 2]),
        exclude=_inter([0, 1], [5, 4]),
    )
    torch.testing.assert_close(matrix, before)
