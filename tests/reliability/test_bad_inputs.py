"""A corpus of malformed inputs: each case gets a specific message, the rest of the work
completes, and nothing partial is stored."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from semwh.errors import InputError, SemwhError
from semwh.extract import ExtractionOptions, run_extraction
from semwh.extract.preprocess import Preprocessing
from semwh.ingest import ingest_images, ingest_space, ingest_words
from semwh.warehouse.layout import Warehouse
from tests.reliability.conftest import check_registered_files, snapshot, tmp_files

pytestmark = pytest.mark.integration

GOOD_WNIDS = ["n01000001", "n01000002"]


def _png(width: int, height: int, rows: bytes | None) -> bytes:
    """A 1-bit greyscale PNG; ``rows`` None writes a header whose data ends at once."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(rows or b"", 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _corpus(folder: Path, samples_dir: Path) -> dict[str, str | None]:
    """Write the corpus; file name -> expected words of the skip reason (None: ingested)."""
    folder.mkdir()
    real = sorted(samples_dir.glob("*.jpg"))[:2]
    expect: dict[str, str | None] = {}

    def name(wnid: int, tag: str, ext: str) -> str:
        return f"n0100000{wnid}_{tag}_x.{ext}"

    for k, path in enumerate(real):
        (folder / name(1, f"good{k}", "jpg")).symlink_to(path)
        expect[name(1, f"good{k}", "jpg")] = None
    data = real[0].read_bytes()
    (folder / name(2, "truncated", "jpg")).write_bytes(data[: len(data) // 2])
    expect[name(2, "truncated", "jpg")] = "cannot decode"
    (folder / name(2, "empty", "jpg")).write_bytes(b"")
    expect[name(2, "empty", "jpg")] = "cannot decode"
    (folder / name(2, "text", "png")).write_text("this is not an image\n")
    expect[name(2, "text", "png")] = "cannot decode"
    rng = np.random.default_rng(0)
    rgb = PILImage.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(folder / name(2, "cmyk", "jpg"))
    expect[name(2, "cmyk", "jpg")] = None
    grey16 = (rng.integers(0, 65535, (40, 48))).astype(np.uint16)
    PILImage.fromarray(grey16).save(folder / name(2, "grey16", "png"))
    expect[name(2, "grey16", "png")] = None
    rgb.convert("P", palette=PILImage.Palette.ADAPTIVE).save(folder / name(2, "palette", "png"))
    expect[name(2, "palette", "png")] = None
    frames = [rgb, rgb.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(folder / name(2, "anim", "gif"), save_all=True, append_images=frames[1:])
    expect[name(2, "anim", "gif")] = None
    # 400 megapixels of zeros: ~50 KB on disk, over twice PIL's MAX_IMAGE_PIXELS.
    side = 20000
    bomb = (b"\x00" * (1 + side // 8)) * side
    (folder / name(2, "bomb", "png")).write_bytes(_png(side, side, bomb))
    expect[name(2, "bomb", "png")] = "decompression bomb"
    # A header that claims 2^31-1 x 2^31-1 pixels with no data behind it.
    (folder / name(2, "huge", "png")).write_bytes(_png(2**31 - 1, 2**31 - 1, None))
    expect[name(2, "huge", "png")] = "cannot decode"
    os.symlink(folder / name(2, "loopb", "jpg"), folder / name(2, "loopa", "jpg"))
    os.symlink(folder / name(2, "loopa", "jpg"), folder / name(2, "loopb", "jpg"))
    expect[name(2, "loopa", "jpg")] = "symbolic links"
    expect[name(2, "loopb", "jpg")] = "symbolic links"
    (folder / "n01000002").mkdir()
    (folder / "n01000002" / "again").symlink_to(folder, target_is_directory=True)
    (folder / "notes.jpg").write_bytes(data)
    expect["notes.jpg"] = "no concept"
    return expect


def test_bad_images_are_listed_and_the_rest_is_ingested_and_extracted(
    warehouse: Warehouse, samples_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "corpus"
    expect = _corpus(folder, samples_dir)
    report = ingest_images(warehouse, folder, wordnet=False)
    skipped = {Path(path).name: reason for path, reason in report.skipped}
    for file, words in expect.items():
        if words is None:
            assert file not in skipped, f"{file} should be ingested: {skipped.get(file)}"
        else:
            assert file in skipped, f"{file} was not reported as skipped"
            assert words in skipped[file].lower(), f"{file}: {skipped[file]!r}"
    assert report.added == sum(1 for w in expect.values() if w is None)

    # Whatever ingest accepts (CMYK, 16-bit, palette, animated GIF), extraction reads as RGB.
    summary = run_extraction(
        warehouse,
        ExtractionOptions(
            "efficientnet_lite0",
            layers="stem,fc",
            shard_size=4,
            batch_size=4,
            device="cpu",
            num_workers=0,
        ),
    )
    assert summary.status == "done" and summary.images == report.added
    check_registered_files(warehouse)
    assert tmp_files(warehouse) == []


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    grey16 = rng.integers(0, 65535, (64, 80)).astype(np.uint16)
    PILImage.fromarray(grey16).save(tmp_path / "deep.png")
    PILImage.fromarray((grey16 >> 8).astype(np.uint8)).save(tmp_path / "shallow.png")
    prep = Preprocessing(resize=64, crop=56)
    deep, shallow = prep.load(tmp_path / "deep.png"), prep.load(tmp_path / "shallow.png")
    assert deep.shape == (3, 56, 56)
    assert (deep == shallow).all()


def test_an_unreadable_image_is_listed(warehouse: Warehouse, samples_dir: Path, tmp_path: Path):
    folder = tmp_path / "locked"
    folder.mkdir()
    real = sorted(samples_dir.glob("*.jpg"))[:2]
    (folder / real[0].name).write_bytes(real[0].read_bytes())
    locked = folder / real[1].name
    locked.write_bytes(real[1].read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as root: chmod 000 does not stop this process from reading")
    report = ingest_images(warehouse, folder, wordnet=False)
    assert report.added == 1
    assert [(Path(p).name, "permission" in r.lower()) for p, r in report.skipped] == [
        (locked.name, True)
    ]


# --- manifests --------------------------------------------------------------------------

MANIFESTS = {
    "no wnid column": ("path,label\na.jpg,dog\n", "line 1"),
    "bad wnid": ("path,wnid\n{good},n0100\n", "line 2"),
    "empty path": ("path,wnid\n{good},n01000001\n,n01000001\n", "line 3"),
    "not utf-8": ("path,wnid\n{good},n01000001\n\udcff,n01000001\n", "line 3"),
    "no rows": ("path,wnid\n", "no images"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_a_bad_manifest_names_its_line_and_stores_nothing(
    case: str, warehouse: Warehouse, samples_dir: Path, tmp_path: Path
) -> None:
    text, words = MANIFESTS[case]
    good = sorted(samples_dir.glob("*.jpg"))[0]
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(text.format(good=good).encode("utf-8", "surrogateescape"))
    before = snapshot(warehouse)
    with pytest.raises(InputError) as info:
        ingest_images(warehouse, manifest=manifest, wordnet=False)
    assert str(manifest) in str(info.value) and words in str(info.value)
    assert snapshot(warehouse) == before


def test_manifest_rows_naming_missing_files_are_listed(
    warehouse: Warehouse, samples_dir: Path, tmp_path: Path
) -> None:
    good = sorted(samples_dir.glob("*.jpg"))[0]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,wnid\n{good},n01000001\nmissing.jpg,n01000002\n")
    report = ingest_images(warehouse, manifest=manifest, wordnet=False)
    assert report.added == 1
    [(path, reason)] = report.skipped
    assert path.endswith("missing.jpg") and "cannot read" in reason


# --- word-vector files -------------------------------------------------------------------

WORD_FILES: dict[str, tuple[bytes, str]] = {
    "wrong dimension": (b"tok0 1 2 3\ntok1 1 2\n", "line 2"),
    "bad utf-8": (b"tok0 1 2 3\n\xff\xfe 1 2 3\n", "line 2"),
    "nan": (b"tok0 1 2 3\ntok1 1 nan 3\n", "NaN"),
    "inf": (b"tok0 1 2 3\ntok1 1 inf 3\n", "NaN or inf"),
    "duplicate": (b"tok0 1 2 3\ntok1 1 2 3\ntok0 4 5 6\n", "tok0"),
    "empty": (b"", "empty"),
    "header lies": (b"5 3\ntok0 1 2 3\ntok1 1 2 3\n", "line 1"),
    "not numbers": (b"tok0 1 2 3\ntok1 a b c\n", "line 2"),
}


@pytest.fixture
def concepts_warehouse(warehouse: Warehouse, samples_dir: Path, tmp_path: Path) -> Warehouse:
    folder = tmp_path / "two"
    folder.mkdir()
    for k, wnid in enumerate(GOOD_WNIDS):
        (folder / f"{wnid}_{k}_x.jpg").symlink_to(sorted(samples_dir.glob("*.jpg"))[k])
    ingest_images(warehouse, folder, wordnet=False)
    return warehouse


@pytest.mark.parametrize("case", sorted(WORD_FILES))
def test_a_bad_word_file_is_refused_with_its_line_and_stores_nothing(
    case: str, concepts_warehouse: Warehouse, tmp_path: Path
) -> None:
    data, words = WORD_FILES[case]
    fmt = "word2vec" if case == "header lies" else "glove"
    path = tmp_path / "vectors.txt"
    path.write_bytes(data)
    mapping = tmp_path / "map.csv"
    mapping.write_text("wnid,tokens\n" + "".join(f"{w},tok{i}\n" for i, w in enumerate(GOOD_WNIDS)))
    before = snapshot(concepts_warehouse)
    with pytest.raises(InputError) as info:
        ingest_words(concepts_warehouse, "w", path, fmt, mapping=mapping)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)
    assert snapshot(concepts_warehouse) == before
    assert tmp_files(concepts_warehouse) == []


# --- external spaces ---------------------------------------------------------------------

SPACES = {
    "duplicate keys": ("wnid,a,b\nn01000001,1,2\nn01000002,3,4\nn01000001,5,6\n", "n01000001"),
    "mixed types": ("wnid,a,b\nn01000001,1,2\nn01000002,3,high\n", "line 3"),
    "ragged rows": ("wnid,a,b\nn01000001,1,2\nn01000002,3\n", "line 3"),
    "non-finite": ("wnid,a,b\nn01000001,1,2\nn01000002,3,inf\n", "n01000002"),
    "no key": ("name,a,b\nx,1,2\n", "line 1"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(SPACES))
def test_a_bad_external_space_is_refused_and_stores_nothing(
    case: str, concepts_warehouse: Warehouse, tmp_path: Path
) -> None:
    text, words = SPACES[case]
    path = tmp_path / "space.csv"
    path.write_text(text)
    before = snapshot(concepts_warehouse)
    with pytest.raises(SemwhError) as info:
        ingest_space(concepts_warehouse, "ext", path)
    assert words in str(info.value), str(info.value)
    assert snapshot(concepts_warehouse) == before
    assert tmp_files(concepts_warehouse) == []


def test_a_space_with_mixed_key_types_in_parquet_is_refused(
    concepts_warehouse: Warehouse, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "space.parquet"
    table = pa.table({"wnid": [1, 2], "vector": [[1.0, 2.0], [3.0, 4.0]]})
    pq.write_table(table, path)
    before = snapshot(concepts_warehouse)
    with pytest.raises(SemwhError) as info:
        ingest_space(concepts_warehouse, "ext", path)
    assert str(path) in str(info.value)
    assert snapshot(concepts_warehouse) == before
