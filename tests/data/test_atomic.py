from __future__ import annotations

from pathlib import Path

import pytest

from cdr.data.atomic import RecboleAtomicConfig, read_atomic
from cdr.errors import DataError, DatasetFormatError
from cdr.registry import Registry

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reads_typed_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "x.item", "item_id:token\ttitle:token_seq\tvec:float_seq\n"
                 "i1\tThe Film\t1 2.5\n\ni2\tOther\t3\n")
    table = read_atomic(path)
    assert table.column("title") == [("The", "Film"), ("Other",)]
    assert table.column("vec") == [(1.0, 2.5), (3.0,)]
    with pytest.raises(DatasetFormatError, match="no field 'genre'"):
        table.column("genre")


@pytest.mark.parametrize(("text", "message"), [
    (INTER + "u1\ti1\t5\n", r"x\.inter:2: expected 4 tab-separated fields, got 3"),
    (INTER + "u1\ti1\tfive\t1\n", r"x\.inter:2: field 'rating': 'five' is not a float"),
    ("user_id\titem_id\n", r"x\.inter:1: header field 'user_id' is not name:type"),
    ("", r"x\.inter:1: empty file"),
])
def test_malformed_files_name_file_line_and_field(tmp_path: Path, text: str,
                                                  message: str) -> None:
    with pytest.raises(DatasetFormatError, match=message):
        read_atomic(write(tmp_path / "x.inter", text))


def test_recbole_atomic_provider(tmp_path: Path) -> None:
    write(tmp_path / "books" / "books.inter", INTER + "u1\tb1\t5\t10\nu2\tb2\t3\t11\n")
    write(tmp_path / "books" / "books.item",
          "item_id:token\ttitle:token_seq\tcategories:token_seq\nb1\tA Book\tfiction\n")
    write(tmp_path / "music.inter", "user_id:token\titem_id:token\nu1\tm1\nu3\tm2\n")
    cfg = RecboleAtomicConfig(directory=str(tmp_path), source="books", target="music")
    ds = Registry().get("datasets", "recbole-atomic").build(cfg, None).load()
    assert ds.user_ids == ("u1", "u2", "u3")
    assert ds.source.items.title == ("A Book", "")
    assert ds.source.items.categories == (("fiction",), ())
    assert ds.target.interactions.rating.tolist() == [1.0, 1.0]  # implicit: no rating field
    assert ds.overlapping_users().tolist() == [0] and ds.side_users().tolist() == [2]
    with pytest.raises(DataError, match=r"no films\.inter"):
        Registry().get("datasets", "recbole-atomic").build(
            RecboleAtomicConfig(directory=str(tmp_path), source="books", target="films"), None
        ).load()
