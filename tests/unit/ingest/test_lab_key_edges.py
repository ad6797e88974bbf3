"""Lab inputs keyed by concept at their edges: ids that read as numbers, names and ids mixed,
repeated columns, and where an image's ambiguous key was read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from semwh.errors import InputError
from semwh.ingest import ingest_concepts, ingest_images, ingest_rdm
from semwh.vectors import load_space

MATRIX = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], dtype=float)


def _rdm_csv(path, rows: list[str], columns: list[str] | None = None):
    columns = rows if columns is None else columns
    lines = ["concept," + ",".join(columns)]
    lines += [
        key + "," + ",".join(str(v) for v in row) for key, row in zip(rows, MATRIX, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def lab(warehouse, tmp_path):
    concepts = tmp_path / "concepts.csv"
    concepts.write_text(
        "concept,name\n001,\n002,\n003,\n004,\nice_cream,ice cream\nbat1,bat\nbat2,bat\n"
    )
    ingest_concepts(warehouse, concepts, wordnet=False)
    return warehouse


def test_rdm_keys_that_read_as_numbers_keep_their_zeros(lab, tmp_path):
    path = _rdm_csv(tmp_path / "r.csv", ["001", "002", "003", "004"])
    assert ingest_rdm(lab, "r", path).n_concepts == 4
    assert load_space(lab, "r").concept_ids == ["001", "002", "003", "004"]


def test_rdm_rows_and_columns_are_compared_as_keys(lab, tmp_path):
    # Surrounding blanks in the header do not make another key.
    path = _rdm_csv(
        tmp_path / "r.csv", ["001", "002", "003", "bat1"], [" 001", "002 ", "003", "bat1"]
    )
    assert ingest_rdm(lab, "r", path).n_concepts == 4
    path = _rdm_csv(
        tmp_path / "d.csv", ["001", "002", "003", "bat1"], ["001", "002", "001", "bat1"]
    )
    with pytest.raises(InputError) as err:
        ingest_rdm(lab, "d", path)
    assert str(err.value) == (
        f"{path}: the header names '001' twice (columns '001' and '001'); each concept has one "
        "column"
    )


def test_an_ambiguous_image_key_names_where_it_was(lab, tmp_path):
    image = tmp_path / "a.png"
    PILImage.new("RGB", (8, 8), (1, 2, 3)).save(image)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,concept\na.png,bat\n")
    with pytest.raises(InputError) as err:
        ingest_images(lab, manifest=manifest, wordnet=False)
    assert str(err.value) == (
        f"images: 'bat' at {manifest} line 2 is the name of 2 concepts ('bat1', 'bat2'): use "
        "the concept id instead"
    )


def test_imagenet_names_below_organising_folders_ask_for_a_layout(tmp_path):
    from semwh.ingest.image_layouts import scan_images

    root = tmp_path / "imagenet"
    for rel in ("train/n01443537_1_goldfish.jpg", "val/n02084071_7.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (4, 4)).save(root / rel)
    with pytest.raises(InputError, match=r"sub-folders \(train, val\), but every file name "):
        scan_images(root)
    listing = scan_images(root, layout="prefix")
    assert sorted(e.concept_key for e in listing.entries) == ["n01443537", "n02084071"]
    # Folders named by the WordNet ids of their files stay the folder layout.
    (root / "n01443537").mkdir()
    (root / "train" / "n01443537_1_goldfish.jpg").rename(root / "n01443537" / "n01443537_1.jpg")
    (root / "val" / "n02084071_7.jpg").unlink()
    assert scan_images(root).layout == "folder"


def test_a_new_stimulus_id_for_a_registered_image_is_reported(lab, tmp_path):
    PILImage.new("RGB", (8, 8), (9, 8, 7)).save(tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,concept,stimulus\na.png,bat1,s1\n")
    assert ingest_images(lab, manifest=manifest, wordnet=False).stimuli_kept == []
    manifest.write_text("path,concept,stimulus\na.png,bat1,s2\n")
    report = ingest_images(lab, manifest=manifest, wordnet=False)
    assert (report.added, report.already_present) == (0, 1)
    assert report.stimuli_kept == [
        (str(tmp_path / "a.png"), "registered as stimulus 's1'; the input's 's2' is not applied")
    ]


def test_new_concepts_close_to_registered_ones_are_reported(lab, tmp_path):
    for k, folder in enumerate(["Ice_cream", "zebra"]):
        (tmp_path / "set" / folder).mkdir(parents=True)
        PILImage.new("RGB", (8, 8), (k, 5, 5)).save(tmp_path / "set" / folder / f"p{k}.png")
    report = ingest_images(lab, tmp_path / "set", wordnet=False)
    assert sorted(report.new_concepts) == ["Ice_cream", "zebra"]
    assert report.new_near_known == [("Ice_cream", ("ice_cream",))]
