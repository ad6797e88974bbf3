"""ingest_space: Parquet and CSV, wnid or name keys, list or feature columns, versions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from semwh.errors import DuplicateError, InputError
from semwh.ingest import ingest_concepts, ingest_space
from semwh.vectors import load_space
from semwh.warehouse.models import Source, Space


@pytest.fixture
def wh(warehouse, tmp_path):
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("n02084071 dog\nn01503061 bird\nn02121808 domestic_cat\n")
    ingest_concepts(warehouse, wnids_file=wnids, wordnet=False)
    return warehouse


WNIDS = ["n02084071", "n01503061", "n02121808"]


def _matrix() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)


def _expected(matrix: np.ndarray) -> np.ndarray:
    order = np.argsort(WNIDS)
    return matrix[order]


def test_parquet_list_column(wh, tmp_path):
    m = _matrix()
    path = tmp_path / "roi.parquet"
    pq.write_table(
        pa.table({"wnid": WNIDS, "vector": pa.array(list(m), pa.list_(pa.float32()))}), path
    )
    report = ingest_space(wh, "roi", path)
    assert (report.status, report.version, report.n_concepts, report.dim) == ("created", 1, 3, 4)
    got = load_space(wh, "roi")
    assert got.concept_ids == sorted(WNIDS)
    np.testing.assert_array_equal(got.matrix.astype(np.float32), _expected(m))
    with wh.session() as s:
        assert s.scalar(select(Space.kind).where(Space.name == "roi")) == "external"


def test_parquet_features_by_concept_name(wh, tmp_path):
    m = _matrix()
    path = tmp_path / "ratings.parquet"
    names = ["dog", "bird", "domestic cat"]  # exact display names
    pq.write_table(pa.table({"concept": names, **{f"f{i}": m[:, i] for i in range(4)}}), path)
    report = ingest_space(wh, "ratings", path)
    assert report.key == "concept"
    np.testing.assert_array_equal(load_space(wh, "ratings").matrix.astype(np.float32), _expected(m))


def test_csv_features_and_vector_column(wh, tmp_path):
    m = _matrix()
    path = tmp_path / "a.csv"
    lines = ["wnid,a,b,c,d"] + [
        w + "," + ",".join(str(v) for v in row) for w, row in zip(WNIDS, m, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    ingest_space(wh, "a", path)
    np.testing.assert_array_equal(load_space(wh, "a").matrix.astype(np.float32), _expected(m))
    path = tmp_path / "b.csv"
    lines = ["wnid,vector"] + [
        f'{w},"[{", ".join(str(v) for v in row)}]"' for w, row in zip(WNIDS, m, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    ingest_space(wh, "b", path)
    np.testing.assert_array_equal(load_space(wh, "b").matrix.astype(np.float32), _expected(m))


def test_reingest_and_new_version(wh, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("wnid,x,y\nn02084071,1,2\nn01503061,3,4\n")
    ingest_space(wh, "a", path)
    again = ingest_space(wh, "a", path)
    assert (again.status, again.version) == ("unchanged", 1)
    path.write_text("wnid,x,y\nn02084071,1,2\nn01503061,3,5\n")
    report = ingest_space(wh, "a", path)
    assert (report.status, report.version, report.previous_version) == ("new version", 2, 1)
    np.testing.assert_array_equal(load_space(wh, "a").matrix, [[3, 5], [1, 2]])
    with wh.session() as s:
        assert s.scalar(select(func.count()).select_from(Source).where(Source.kind == "space")) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "wnid,x\nn02084071,1\nn01234567,2\n",
            "1 unknown concept key, neither the id, the name nor the WordNet id of a registered "
            "concept: 'n01234567' at {path} line 3",
        ),
        (
            "wnid,x\nn02084071,1\nn02084071,2\n",
            "{path} line 3: 'n02084071' gives concept 'n02084071' again (first at {path} line 2)",
        ),
        (
            "concept,x\ndog,1\nunicorn,2\n",
            "1 unknown concept key, neither the id, the name nor the WordNet id of a registered "
            "concept: 'unicorn' at {path} line 3",
        ),
        ("wnid,x\nn02084071,1\nn01503061,nan\n", "line 3: the vector of 'n01503061' holds NaN"),
        ("wnid,x\nn02084071,1\nn01503061,inf\n", "line 3: the vector of 'n01503061' holds NaN"),
        ("wnid,x\nn02084071,1\nn01503061,abc\n", "line 3: column 'x' value 'abc' is not a number"),
        ("wnid,x\nn02084071,1\nn01503061\n", "line 3: 1 fields, the header has 2"),
        ("name,x\ndog,1\n", "line 1: no key column"),
        ("wnid,x\n", "the file has no rows"),
        ("", "the file is empty"),
        (
            'wnid,vector\nn02084071,"[1, 2]"\nn01503061,"[1]"\n',
            "line 3: vector of length 1, expected 2",
        ),
    ],
)
def test_malformed_csv_stores_nothing(wh, tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        ingest_space(wh, "bad", path)
    expected = expected.replace("{path}", str(path))
    assert str(path) in str(err.value) and expected in str(err.value)
    with wh.session() as s:
        assert s.scalar(select(func.count()).select_from(Space)) == 0
        assert s.scalar(select(func.count()).select_from(Source).where(Source.kind == "space")) == 0


def test_bad_utf8_and_parquet_nulls(wh, tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes(b"wnid,x\nn02084071,1\nn01503061\xff,2\n")
    with pytest.raises(InputError, match=r"u\.csv line 3: not valid UTF-8"):
        ingest_space(wh, "u", path)
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"wnid": WNIDS[:2], "x": pa.array([1.0, None])}), path)
    with pytest.raises(InputError, match=r"n\.parquet row 1: column 'x' is empty"):
        ingest_space(wh, "n", path)


def test_name_held_by_another_kind_needs_replace(wh, tmp_path):
    from semwh.vectors import save_space

    save_space(wh, "taken", "word", WNIDS[:2], np.ones((2, 2)))
    path = tmp_path / "a.csv"
    path.write_text("wnid,x,y\nn02084071,1,2\nn01503061,3,4\n")
    with pytest.raises(DuplicateError, match="already exists as a word space"):
        ingest_space(wh, "taken", path)
    assert ingest_space(wh, "taken", path, replace=True).space.kind == "external"
