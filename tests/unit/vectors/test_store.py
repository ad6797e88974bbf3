"""The vector store: atomic files, registration, spaces and what readers see."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from semwh.errors import DuplicateError, InputError, NotFoundError
from semwh.vectors import (
    image_shard_relpath,
    load_space,
    prepare_space,
    read_file_metadata,
    register_space,
    save_space,
    write_vector_file,
)
from semwh.warehouse.models import Space, VectorFile
from semwh.warehouse.readonly import run_sql


def _matrix(seed: int, n: int = 5, d: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_space_round_trip_is_exact_and_sorted(warehouse) -> None:
    wnids = ["n05", "n02", "n03", "n04", "n01"]
    m = _matrix(0)
    save_space(warehouse, "ratings", "external", wnids, m)
    space = load_space(warehouse, "ratings")
    assert space.concept_ids == sorted(wnids)
    for i, wnid in enumerate(wnids):
        # float32 in, float32 stored: equal bit for bit after widening.
        assert np.array_equal(space.subset([wnid])[0], m[i].astype(np.float64))
    assert space.matrix.dtype == np.float64


def test_same_content_is_a_no_op_and_other_content_needs_replace(warehouse) -> None:
    wnids = ["n1", "n2", "n3", "n4"]
    first = save_space(warehouse, "s", "external", wnids, _matrix(1, 4))
    again = save_space(warehouse, "s", "external", wnids, _matrix(1, 4))
    assert again.space_id == first.space_id
    with pytest.raises(DuplicateError, match="already exists with other vectors"):
        save_space(warehouse, "s", "external", wnids, _matrix(2, 4))
    save_space(warehouse, "s", "external", wnids, _matrix(2, 4), replace=True)
    assert np.array_equal(load_space(warehouse, "s").matrix, _matrix(2, 4).astype(np.float64))
    with warehouse.session() as s:
        # One registered file per space: the old version is no longer read.
        assert s.scalar(select(func.count()).select_from(VectorFile)) == 1
        assert s.scalar(select(func.count()).select_from(Space)) == 1


def test_bad_vectors_are_refused_naming_the_concept(warehouse) -> None:
    m = _matrix(3, 4)
    with pytest.raises(InputError, match="concept n2 appears more than once"):
        save_space(warehouse, "dup", "external", ["n1", "n2", "n2", "n3"], m)
    m[2, 1] = np.nan
    with pytest.raises(InputError, match="non-finite values in the vectors of n3"):
        save_space(warehouse, "nan", "external", ["n1", "n2", "n3", "n4"], m)
    with pytest.raises(InputError, match="reserved for MODEL/LAYER"):
        save_space(warehouse, "a/b", "external", ["n1", "n2", "n3", "n4"], _matrix(3, 4))
    with pytest.raises(NotFoundError, match="unknown space 'nope'"):
        load_space(warehouse, "nope")
    assert not any(warehouse.tmp_root.glob("*"))


def test_unregistered_files_are_invisible_to_sql(warehouse) -> None:
    rel = image_shard_relpath("m", "layer.1", run_id=1, shard_index=0)
    info = write_vector_file(
        warehouse,
        rel,
        "m/layer.1",
        ["n1", "n2"],
        _matrix(4, 2),
        image_ids=[1, 2],
        metadata={"model": "m"},
    )
    assert (warehouse.vectors_root / rel).exists() and info.n_rows == 2
    assert read_file_metadata(warehouse, rel)["model"] == "m"
    assert pq.read_table(warehouse.vectors_root / rel).column("image_id").to_pylist() == [1, 2]
    # Written but never registered: the vectors view does not see it.
    assert run_sql(warehouse, "SELECT count(*) AS n FROM vectors").rows() == [(0,)]
    prepared = prepare_space(warehouse, "w", "word", ["n2", "n1", "n3", "n4"], _matrix(5, 4))
    assert run_sql(warehouse, "SELECT count(*) AS n FROM vectors").rows() == [(0,)]
    with warehouse.session() as session:
        register_space(session, prepared)
    rows = run_sql(
        warehouse, "SELECT space, concept, image_id FROM vectors ORDER BY concept"
    ).rows()
    assert rows == [("w", "n1", None), ("w", "n2", None), ("w", "n3", None), ("w", "n4", None)]
