"""ingest_images on small generated images: layouts, manifest, dedupe, broken files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from semwh.errors import ConfigError, InputError
from semwh.ingest import ingest_images
from semwh.warehouse.models import Concept, Image, Source


def _jpeg(path, seed: int, size=(32, 24), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    PILImage.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    return path


def _rows(wh):
    with wh.session() as s:
        return {r.path: r for r in s.scalars(select(Image))}


def test_wnid_folders_flat_names_and_broken_files(warehouse, tmp_path):
    # One folder per layout: a folder holding both sub-folders and flat files is refused.
    folders = tmp_path / "folders"
    a = _jpeg(folders / "n02084071" / "a.JPEG", 1, (40, 30))
    _jpeg(folders / "n02084071" / "b.JPEG", 2)
    (folders / "n02084071" / "same-as-a.jpeg").write_bytes(a.read_bytes())
    truncated = folders / "n02084071" / "truncated.jpg"
    truncated.write_bytes(a.read_bytes()[:200])
    (folders / "n02084071" / "notes.txt").write_text("not an image")
    report = ingest_images(warehouse, folders, wordnet=False)
    assert report.layout == "folder"
    assert report.added == 2 and report.already_present == 0
    assert report.duplicates == [(str(folders / "n02084071" / "same-as-a.jpeg"), str(a))]
    assert dict(report.skipped)[str(truncated)].startswith("cannot decode")

    flat = tmp_path / "flat"
    c = _jpeg(flat / "n02121808_17_domestic_cat.jpg", 3, mode="L")
    (flat / "misc.png").write_bytes(b"not really a png")
    report = ingest_images(warehouse, flat, wordnet=False)
    assert report.layout == "prefix" and report.added == 1
    assert (
        "no concept: <concept>_<rest> needs a '_' in the name 'misc'"
        in (dict(report.skipped)[str(flat / "misc.png")])
    )
    rows = _rows(warehouse)
    assert (rows[str(a)].width, rows[str(a)].height, rows[str(a)].mode) == (40, 30, "RGB")
    assert rows[str(a)].sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert rows[str(c)].mode == "L" and rows[str(c)].concept == "n02121808"
    assert rows[str(c)].stimulus == "n02121808_17_domestic_cat"
    with warehouse.session() as s:
        cat = s.get(Concept, "n02121808")
        assert (cat.name, cat.origin) == ("domestic cat", "images")
        assert cat.imagenet_index is None  # not an ILSVRC-1k class

    again = ingest_images(warehouse, folders, wordnet=False)
    assert (again.added, again.already_present, again.source_status) == (0, 2, "unchanged")
    _jpeg(folders / "n01503061" / "new.JPEG", 9)
    more = ingest_images(warehouse, folders, wordnet=False)
    assert (more.added, more.source_status, more.source_version) == (1, "new version", 2)
    assert more.new_concepts == ["n01503061"]
    with warehouse.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 4
        assert s.scalar(select(func.count()).select_from(Source)) == 3

    (folders / "misc.png").write_bytes(b"not really a png")
    with pytest.raises(InputError, match=r"layout is unclear: choose --layout folder"):
        ingest_images(warehouse, folders, wordnet=False)


def test_manifest_with_split_and_labels(warehouse, tmp_path):
    a = _jpeg(tmp_path / "x" / "n02084071_5_dog.jpg", 1)
    b = _jpeg(tmp_path / "x" / "b.jpg", 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,wnid,split\nx/n02084071_5_dog.jpg,n02084071,train\n"
        f"{b},n01503061,test\nx/missing.jpg,n01503061,test\n"
    )
    report = ingest_images(warehouse, manifest=manifest, wordnet=False)
    assert report.added == 2
    assert report.skipped[0][0].endswith("missing.jpg") and "cannot read" in report.skipped[0][1]
    rows = _rows(warehouse)
    assert rows[str(a)].split == "train" and rows[str(b)].split == "test"
    with warehouse.session() as s:
        assert s.get(Concept, "n02084071").name == "dog"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("path,label\na.jpg,dog\n", "line 1: an image manifest needs the columns path and concept"),
        ("path,wnid\na.jpg,dog\n", "line 2: 'dog' in the column wnid is not a WordNet 3.0 noun id"),
        ("path,wnid\n,n02084071\n", "line 2: empty path"),
        ("path,wnid\n", "lists no images"),
    ],
)
def test_malformed_manifest(warehouse, tmp_path, text, expected):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(InputError) as err:
        ingest_images(warehouse, manifest=manifest, wordnet=False)
    assert str(manifest) in str(err.value) and expected in str(err.value)
    assert _rows(warehouse) == {}


def test_folder_or_manifest(warehouse, tmp_path):
    with pytest.raises(ConfigError):
        ingest_images(warehouse)
    with pytest.raises(InputError, match="does not exist"):
        ingest_images(warehouse, tmp_path / "nope")
