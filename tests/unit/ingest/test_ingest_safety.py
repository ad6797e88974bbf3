"""Hostile inputs to ingest: refused ingests store nothing, FIFOs and devices are refused,
BOMs are dropped, names follow one rule, damaged vector files are named on read."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from semwh.errors import ConfigError, InputError, InvalidNameError, VectorFileError
from semwh.ingest import ingest_concepts, ingest_images, ingest_space, ingest_words
from semwh.ingest.files import read_text_file
from semwh.ingest.formats import read_word_vectors
from semwh.names import check_name
from semwh.vectors import load_space
from semwh.warehouse.models import Source, VectorFile
from semwh.warehouse.readonly import run_sql
from semwh.workflow.runfile import parse_config

WNIDS = ["n01503061", "n02084071", "n02121808"]


@pytest.fixture
def wh(warehouse, tmp_path):
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("n02084071 dog\nn01503061 bird\nn02121808 cat\n")
    ingest_concepts(warehouse, wnids_file=wnids, wordnet=False)
    return warehouse


def _sources(wh, kind: str = "space") -> int:
    with wh.session() as s:
        return s.scalar(select(func.count()).select_from(Source).where(Source.kind == kind))


def _csv(path: Path, seed: int = 0) -> Path:
    m = np.random.default_rng(seed).normal(size=(3, 4))
    rows = ["wnid,a,b,c,d"] + [",".join([w, *map(str, r)]) for w, r in zip(WNIDS, m, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_refused_space_ingest_leaves_no_sources_row(wh, tmp_path):
    path = tmp_path / "nested.parquet"
    nested = pa.array([[[1.0, 2.0]], [[3.0, 4.0]], [[5.0, 6.0]]], pa.list_(pa.list_(pa.float64())))
    pq.write_table(pa.table({"wnid": WNIDS, "vector": nested}), path)
    with pytest.raises(InputError, match="lists of list"):
        ingest_space(wh, "nested", path)
    assert _sources(wh) == 0


@pytest.mark.parametrize(
    "column", [pa.array(["1 2", "3 4", "5 6"]), pa.array([["1"], ["2"], ["3"]])]
)
def test_a_parquet_vector_column_of_strings_is_one_line(wh, tmp_path, column):
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"wnid": WNIDS, "vector": column}), path)
    with pytest.raises(InputError, match=r"column 'vector' .*expected (a list|lists) of numbers"):
        ingest_space(wh, "strings", path)
    assert _sources(wh) == 0


def test_an_oversized_csv_cell_names_the_line(wh, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("wnid,vector\n" + f'{WNIDS[0]},"{" ".join(["1.0"] * 40000)}"\n')
    with pytest.raises(InputError, match=r"big.csv line \d+: malformed CSV.*limited to"):
        ingest_space(wh, "big", path)
    assert _sources(wh) == 0


def test_a_bom_keeps_the_first_word_of_a_glove_file(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfdog 1 2\ncat 3 4\n")
    vectors = read_word_vectors(path, "glove", None)
    assert vectors.tokens == ["dog", "cat"]
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfwnid,tokens\n")
    assert read_text_file(csv_path).startswith("wnid")


def test_fifos_and_devices_are_refused_when_named(wh, tmp_path):
    fifo = tmp_path / "space.csv"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="named pipe"):
        ingest_space(wh, "fifo", fifo)
    with pytest.raises(InputError, match="named pipe"):
        ingest_words(wh, "fifo", fifo, "glove")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,wnid\n/dev/zero,{WNIDS[0]}\n")
    with pytest.raises(InputError, match=r"manifest.csv line 2: /dev/zero is a device"):
        ingest_images(wh, manifest=manifest, wordnet=False)


def test_a_fifo_in_an_image_folder_is_skipped(wh, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    PILImage.fromarray(image).save(folder / f"{WNIDS[0]}_1.jpg")
    os.mkfifo(folder / f"{WNIDS[1]}_2.jpg")
    signal.alarm(60)  # a read of the FIFO would block forever: fail instead of hanging
    try:
        report = ingest_images(wh, folder, wordnet=False)
    finally:
        signal.alarm(0)
    assert report.added == 1
    assert [(Path(p).name, r) for p, r in report.skipped] == [
        (f"{WNIDS[1]}_2.jpg", "is a named pipe (FIFO), not a regular file")
    ]


@pytest.mark.parametrize(
    "name", ["", " roi", "roi ", "a..b", "a\\b", "a/b", "tab\there", "new\nline", 7]
)
def test_names_follow_one_rule(name):
    with pytest.raises(InvalidNameError, match="is not valid"):
        check_name(name, "space")


def test_names_follow_one_rule_at_ingest(wh, tmp_path):
    assert check_name("resnet50/layer3.5", layer=True) == "resnet50/layer3.5"
    assert check_name("glove 6B (50d)") == "glove 6B (50d)"
    for bad in ("../x", "a/b", " x"):
        with pytest.raises(InvalidNameError):
            ingest_space(wh, bad, _csv(tmp_path / "s.csv"))
    assert _sources(wh) == 0


def test_a_run_file_value_of_the_wrong_type_is_one_line():
    data = {"images": {"folder": "x"}, "words": [], "models": []}
    with pytest.raises(ConfigError, match=r"run.toml: \[analysis\] permutations = 'many'"):
        parse_config({**data, "analysis": {"permutations": "many"}}, Path("."), "run.toml")
    with pytest.raises(ConfigError, match="must be true or false"):
        parse_config({**data, "analysis": {"recovery": 1}}, Path("."), "run.toml")


def _space_file(wh) -> Path:
    with wh.session() as s:
        rel = s.scalar(select(VectorFile.path).where(VectorFile.kind == "concepts"))
    return wh.vectors_root / rel


def test_an_altered_vector_file_is_named_on_read(wh, tmp_path):
    ingest_space(wh, "roi", _csv(tmp_path / "s.csv"))
    path = _space_file(wh)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VectorFileError, match=r"of space 'roi' holds \d+ bytes.*semwh repair"):
        load_space(wh, "roi")
    path.write_bytes(data + b"\0")
    with pytest.raises(VectorFileError, match=str(path.name)):
        load_space(wh, "roi")


def test_a_missing_vector_file_is_named_by_the_vectors_view(wh, tmp_path):
    ingest_space(wh, "roi", _csv(tmp_path / "s.csv"))
    path = _space_file(wh)
    path.unlink()
    with pytest.raises(Exception, match=rf"missing: .*{path.name}.*semwh repair"):
        run_sql(wh, "SELECT count(*) FROM vectors")
    assert run_sql(wh, "SELECT name FROM spaces").rows() == [("roi",)]
    with pytest.raises(VectorFileError, match="registered but missing"):
        load_space(wh, "roi")
