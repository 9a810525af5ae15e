from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from cdr.data.amazon import Amazon2023Config, AmazonConfig
from cdr.data.records import CrossDomainDataset
from cdr.errors import DataError, DatasetFormatError
from cdr.registry import Registry

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load(cfg: AmazonConfig) -> CrossDomainDataset:
    provider = Registry().get("datasets", cfg.kind).build(cfg, None)  # type: ignore[arg-type]
    dataset: CrossDomainDataset = provider.load()
    return dataset


@pytest.mark.parametrize("version", ["2018", "2023"])
def test_fixture_categories_become_two_domains(version: str) -> None:
    cls = AmazonConfig if version == "2018" else Amazon2023Config
    ds = load(cls(directory=str(FIXTURES / f"amazon{version}")))
    assert ds.user_ids == ("A1USER", "A2USER", "A3USER", "A4USER", "A5USER")
    assert ds.source.item_ids == ("B00MOV1", "B00MOV2", "B00MOV3")  # B00UNUSED: no review
    assert ds.target.item_ids == ("B00CD01", "B00CD02")
    assert ds.overlapping_users().tolist() == [0, 1]
    assert ds.side_users().tolist() == [4]
    assert ds.source_only_users().tolist() == [2, 3]
    src = ds.source
    assert src.interactions.rating.tolist() == [5.0, 3.0, 4.0, 2.0, 1.0, 5.0]
    assert src.interactions.timestamp[0].item() == 1420070400  # 2023: ms -> s
    assert src.items.title[0] == "The Long Road"
    assert src.items.description[0].startswith("A drama about a family journey.")
    assert src.items.description[1] == ""  # empty description list
    assert src.items.categories[2] == ("Movies & TV", "Thriller")
    assert src.items.image == (None, None, None)  # no image_dir: missing, not an error
    assert src.reviews is not None and src.reviews[4] == "Boring."
    if version == "2018":
        assert src.reviews[1] == ""  # a 2018 review without reviewText


def test_gzipped_files_and_local_images(tmp_path: Path) -> None:
    for file in (FIXTURES / "amazon2023").iterdir():
        with file.open("rb") as src, gzip.open(tmp_path / f"{file.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (4, 4), "red").save(images / "B00MOV3.jpg")
    Image.new("RGB", (4, 4), "blue").save(images / "B00CD02.png")
    ds = load(Amazon2023Config(directory=str(tmp_path), image_dir=str(images)))
    assert ds.source.items.image == (None, None, "B00MOV3.jpg")
    assert ds.target.items.image == (None, "B00CD02.png")
    assert ds.source.root == images.resolve()
    assert len(ds.target.interactions) == 4


def _broken(tmp_path: Path, line: str) -> Path:
    shutil.copytree(FIXTURES / "amazon2018", tmp_path / "a")
    with (tmp_path / "a" / "CDs_and_Vinyl.json").open("a") as fh:
        fh.write(line + "\n")
    return tmp_path / "a"


@pytest.mark.parametrize(("line", "message"), [
    ('{"reviewerID": "X", "asin": "B1", "overall": 5', r"CDs_and_Vinyl\.json:5: malformed JSON"),
    ('{"reviewerID": "X", "asin": "B1"}', r"CDs_and_Vinyl\.json:5: missing field 'overall'"),
    ('{"reviewerID": "X", "asin": "B1", "overall": "five"}',
     r"CDs_and_Vinyl\.json:5: field 'overall' has type str, expected int or float"),
    ('[1, 2]', r"CDs_and_Vinyl\.json:5: expected a JSON object"),
])
def test_bad_lines_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    directory = _broken(tmp_path, line)
    with pytest.raises(DatasetFormatError, match=message):
        load(AmazonConfig(directory=str(directory)))
    ds = load(AmazonConfig(directory=str(directory), skip_malformed=True))
    assert len(ds.target.interactions) == 4


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no 2018 file for 'Books'"):
        load(AmazonConfig(directory=str(FIXTURES / "amazon2018"), source="Books"))
    with pytest.raises(DataError, match=r"dataset\.directory"):
        load(AmazonConfig())
    empty = tmp_path / "e"
    shutil.copytree(FIXTURES / "amazon2018", empty)
    (empty / "CDs_and_Vinyl.json").write_text("")
    with pytest.raises(DataError, match="'CDs_and_Vinyl' has no interactions"):
        load(AmazonConfig(directory=str(empty)))


def test_filters_from_the_papers_on_amazon(tmp_path: Path) -> None:
    from cdr.data.filters import FilterConfig, apply_filters

    ds = load(AmazonConfig(directory=str(FIXTURES / "amazon2018")))
    out, reports = apply_filters(ds, FilterConfig(min_review_words=5, require_description=True))
    by = {(r.filter, r.domain): r for r in reports}
    # reviews 'It was fine.' (no text: ''), 'Boring.' and 'Not my style.' are < 5 words
    assert by[("reviews >= 5 words", "Movies_and_TV")].removed_interactions == 2
    assert by[("reviews >= 5 words", "CDs_and_Vinyl")].removed_interactions == 1
    # B00MOV2 has no description and loses its item row (its reviews were already gone)
    assert by[("items with a description", "Movies_and_TV")].removed_items == 1
    assert out.source.item_ids == ("B00MOV1", "B00MOV3")
    assert out.user_ids == ("A1USER", "A2USER", "A4USER", "A5USER")  # A3USER had one review
    assert torch.equal(out.overlapping_users(), torch.tensor([0, 1]))
