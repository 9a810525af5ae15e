"""``read_reviews`` validates a column at a time when every value is of the usual kind and
row by row otherwise: both must accept, convert and refuse exactly the same lines.

Expected values are written out by hand; every refusal must name the file and line of the
first bad row (in file order, also when a malformed JSON line comes later).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cdr.data.amazon import FORMATS, read_reviews
from cdr.data.validate import RatingScale
from cdr.errors import DatasetFormatError

V2018, V2023 = FORMATS["2018"], FORMATS["2023"]


def _write(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _r2018(user: str, item: str, stars: Any, stamp: Any = 1_500_000_000, text: Any = "ok") -> dict:
    row = {"reviewerID": user, "asin": item, "overall": stars, "unixReviewTime": stamp}
    if text is not None:
        row["reviewText"] = text
    return row


def test_clean_2018_file_by_hand(tmp_path: Path) -> None:
    path = _write(tmp_path / "Books.json", [
        _r2018("A1", "B1", 5.0, 1_420_070_400, "great read"),
        _r2018("A2", "B1", 3, 0, None),  # int stars, epoch 0, no review text
        {"reviewerID": "A1", "asin": "B2", "overall": 1.0},  # no time: 0
    ])  # fmt: skip
    raw = read_reviews(path, V2018, "Books")
    assert list(raw.user_ids) == ["A1", "A2", "A1"]
    assert list(raw.item_ids) == ["B1", "B1", "B2"]
    assert raw.ratings.dtype == np.float32 and raw.ratings.tolist() == [5.0, 3.0, 1.0]
    assert raw.timestamps.dtype == np.int64
    assert raw.timestamps.tolist() == [1_420_070_400, 0, 0]
    assert list(raw.reviews or ()) == ["great read", "", ""]
    assert raw.clipped == 0


def test_2023_milliseconds_become_seconds(tmp_path: Path) -> None:
    rows = [
        {"user_id": "U1", "parent_asin": "P1", "rating": 4.0, "timestamp": 1_420_070_400_999},
        {"user_id": "U2", "parent_asin": "P2", "rating": 2, "timestamp": 999, "text": "meh"},
    ]
    raw = read_reviews(_write(tmp_path / "Books.jsonl", rows), V2023, "Books")
    assert raw.timestamps.tolist() == [1_420_070_400, 0]  # floor of ms / 1000
    assert list(raw.reviews or ()) == ["", "meh"]


def test_values_the_row_path_converts(tmp_path: Path) -> None:
    """A float timestamp and a rating clipped into the scale are accepted by the row path."""
    path = _write(tmp_path / "Books.json", [
        _r2018("A1", "B1", 5.0, 1_500_000_000.7),
        _r2018("A2", "B2", 7.5),
        _r2018("A3", "B3", 0.5),
    ])  # fmt: skip
    raw = read_reviews(path, V2018, "Books", scale=RatingScale(1.0, 5.0, clip=True))
    assert raw.timestamps.tolist() == [1_500_000_000, 1_500_000_000, 1_500_000_000]
    assert raw.ratings.tolist() == [5.0, 5.0, 1.0]
    assert raw.clipped == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_r2018("A9", "B9", 4.0, -1), r"Books\.json:3: unixReviewTime -1 is negative"),
        (_r2018("A9", "B9", 4.0, 2**63), r"Books\.json:3: unixReviewTime .* does not fit in int64"),
        (_r2018("A9", "B9", True), r"Books\.json:3: field 'overall' has type bool"),
        (_r2018("A9", "B9", 6.0), r"Books\.json:3: overall 6 is outside the declared scale"),
        (_r2018("A9", "B9", 10**400), r"Books\.json:3: overall .* too large for a float"),
        (_r2018("A9", "B9", 4.0, "soon"), r"Books\.json:3: field 'unixReviewTime' has type str"),
        (_r2018("A9", "B9", 4.0, text=7), r"Books\.json:3: field 'reviewText' has type int"),
        (_r2018("A9", " ", 4.0), r"Books\.json:3: empty asin"),
        (_r2018("A\x00", "B9", 4.0), r"Books\.json:3: reviewerID .* control character"),
        ({"reviewerID": "A9", "overall": 4.0}, r"Books\.json:3: missing field 'asin'"),
    ],
)
def test_a_bad_value_names_its_line(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    rows: list[dict[str, Any] | str] = [_r2018("A1", "B1", 5.0), _r2018("A2", "B2", 4.0), row]
    path = _write(tmp_path / "Books.json", [*rows, _r2018("A3", "B3", 1.0)])
    with pytest.raises(DatasetFormatError, match=message):
        read_reviews(path, V2018, "Books")
    kept = read_reviews(path, V2018, "Books", skip_malformed=True)
    assert list(kept.user_ids) == ["A1", "A2", "A3"]  # only the bad line is skipped


def test_the_first_problem_in_file_order_is_reported(tmp_path: Path) -> None:
    field_first = _write(tmp_path / "a.json", [
        _r2018("A1", "B1", 5.0), _r2018("A2", "B2", "five"), "{not json", _r2018("A3", "B3", 1)
    ])  # fmt: skip
    with pytest.raises(DatasetFormatError, match=r"a\.json:2: field 'overall' has type str"):
        read_reviews(field_first, V2018, "Books")
    json_first = _write(tmp_path / "b.json", [
        _r2018("A1", "B1", 5.0), "{not json", _r2018("A2", "B2", "five")
    ])  # fmt: skip
    with pytest.raises(DatasetFormatError, match=r"b\.json:2: malformed JSON"):
        read_reviews(json_first, V2018, "Books")


def test_byte_order_mark_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "Books.json"
    body = json.dumps(_r2018("A1", "B1", 5.0)) + "\n  \t\n\n" + json.dumps(_r2018("A2", "B2", 2))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode() + b"\n")
    raw = read_reviews(path, V2018, "Books")
    assert list(raw.user_ids) == ["A1", "A2"]
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xef\xbb\xbf" + b'{"reviewerID": "\xff"}\n')
    with pytest.raises(DatasetFormatError, match=r"bad\.json:1: not UTF-8 text \(byte 0xff"):
        read_reviews(bad, V2018, "Books")
