"""Read-only SQL: rows as Arrow, writes refused, the views over registry and Parquet."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from semwh.errors import ReadOnlyError, SchemaMismatchError, WarehouseError
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    Concept,
    Result2v2,
    ResultRSA,
    Space,
)
from semwh.warehouse.readonly import run_sql
from tests.factories import add_analysis_run, add_sweep, comparison

LAYER_CURVE_COLUMNS = [
    "model",
    "layer",
    "depth_index",
    "relative_depth",
    "word_space",
    "accuracy_2v2",
    "p_2v2",
    "p_fdr_2v2",
    "rho_rsa",
    "p_rsa",
    "p_fdr_rsa",
    "sweep_id",
    "null_mean_2v2",
    "null_q95_2v2",
    "null_mean_rsa",
    "null_q95_rsa",
    "n_concepts",
    "n_permutations",
    "similarity",
    "distance",
    "rsa_method",
    "result_id_2v2",
    "result_id_rsa",
    "space",
    # Revision 0007: targets with subjects and their ceilings on the curves' scale.
    "target",
    "n_subjects",
    "ceiling_lower_2v2",
    "ceiling_upper_2v2",
    "ceiling_lower_rsa",
    "ceiling_upper_rsa",
    "level",
    "n_items",
    "permute",
    # Revision 0011: each test's bootstrap interval and noise ceiling.
    "ci_low_2v2",
    "ci_high_2v2",
    "ceiling_low_2v2",
    "ceiling_high_2v2",
    "ci_low_rsa",
    "ci_high_rsa",
    "ceiling_low_rsa",
    "ceiling_high_rsa",
]


def test_rows_and_columns(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add_all(
            [
                Concept(concept="n2", name="cat", origin="file"),
                Concept(concept="n1", name="dog", origin="file"),
            ]
        )
    result = run_sql(warehouse, "SELECT concept, name FROM concepts ORDER BY concept")
    assert result.columns == ["concept", "name"]
    assert result.rows() == [("n1", "dog"), ("n2", "cat")]
    assert isinstance(result.table, pa.Table)


def test_bound_parameters(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(Concept(concept="n1", name="o'brien", origin="file"))
    result = run_sql(
        warehouse, "SELECT concept FROM concepts WHERE name = $name", {"name": "o'brien"}
    )
    assert result.rows() == [("n1",)]


def test_statement_without_rows_gives_empty_result(warehouse: Warehouse) -> None:
    assert run_sql(warehouse, "SELECT * FROM concepts").table.num_rows == 0


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO concepts (concept, name, origin, created_at) VALUES ('n1', 'x', 'y', now())",
        "DELETE FROM concepts",
        "CREATE TABLE t (x INTEGER)",
        "DROP TABLE spaces",
        "UPDATE alembic_version SET version_num = 'x'",
    ],
)
def test_writes_are_refused(warehouse: Warehouse, statement: str) -> None:
    with pytest.raises(ReadOnlyError, match="read-only"):
        run_sql(warehouse, statement)
    assert run_sql(warehouse, "SELECT count(*) FROM spaces").rows() == [(0,)]


def test_invalid_sql_names_the_error(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="SQL error: .*no_such_table"):
        run_sql(warehouse, "SELECT * FROM no_such_table")


def test_sql_on_a_registry_without_a_schema_says_to_init(tmp_path: Path) -> None:
    # Any registry is read through a snapshot; one without a schema says what to run.
    sqlite3.connect(tmp_path / "r.sqlite").close()
    wh = Warehouse(tmp_path, f"sqlite:///{tmp_path / 'r.sqlite'}")
    with pytest.raises(SchemaMismatchError, match="has no schema.*init"):
        run_sql(wh, "SELECT 1")


def test_empty_vectors_view_has_its_columns(warehouse: Warehouse) -> None:
    result = run_sql(warehouse, "SELECT * FROM vectors")
    assert result.columns == ["space", "concept", "image_id", "vector"]
    assert result.table.num_rows == 0
    assert result.table.schema.field("vector").type == pa.list_(pa.float32())


def test_vectors_view_reads_registered_files(warehouse: Warehouse) -> None:
    from semwh.vectors import save_space

    matrix = np.arange(6, dtype=np.float64).reshape(3, 2) / 7
    save_space(warehouse, "ext", "external", ["n3", "n1", "n2"], matrix)
    result = run_sql(
        warehouse, "SELECT space, concept, image_id, vector FROM vectors ORDER BY concept"
    )
    rows = result.rows()
    assert [r[1] for r in rows] == ["n1", "n2", "n3"]
    assert all(r[0] == "ext" and r[2] is None for r in rows)
    by_concept = {r[1]: r[3] for r in rows}
    np.testing.assert_allclose(by_concept["n3"], matrix[0].astype(np.float32))


def test_layer_curves_shows_the_newest_finished_sweep_of_current_results(
    warehouse: Warehouse,
) -> None:
    """Per pair: the newest complete sweep whose results match the spaces' content now."""
    with warehouse.session() as session:
        run = add_analysis_run(session)
        for name, kind, sha in (("m/l1", "layer", "a" * 64), ("glove", "word", "b" * 64)):
            session.add(
                Space(
                    name=name,
                    kind=kind,
                    model="m" if kind == "layer" else None,
                    layer="l1" if kind == "layer" else None,
                    depth_index=0 if kind == "layer" else None,
                    relative_depth=0.25 if kind == "layer" else None,
                    dim=4,
                    n_concepts=5,
                    content_sha256=sha,
                )
            )
        session.flush()
        common = dict(
            space_a="m/l1",
            space_b="glove",
            n_concepts=5,
            seed=1,
            space_a_sha256="a" * 64,
            space_b_sha256="b" * 64,
            bootstrap=0,
            analysis_version=1,
        )

        def two(accuracy: float, **over: object) -> Result2v2:
            row = Result2v2(
                **comparison(run.analysis_id, **{**common, **over}, n_permutations=1000),
                distance="pearson",
                tie_tol=1e-10,
                n_pairs=10,
                accuracy=accuracy,
                p_value=0.01,
            )
            session.add(row)
            session.flush()
            return row

        def rsa(rho: float) -> ResultRSA:
            row = ResultRSA(
                **comparison(run.analysis_id, **common, n_permutations=0),
                method="spearman",
                rho=rho,
            )
            session.add(row)
            session.flush()
            return row

        def family(when: datetime, status: str, *members: tuple[str, object, float]) -> int:
            ids = [(test, row.result_id, p) for test, row, p in members]  # type: ignore[attr-defined]
            sweep = add_sweep(session, ids, created_at=when, n_permutations=1000, status=status)
            return sweep.sweep_id

        shown = family(
            datetime(2026, 1, 1), "complete", ("2v2", two(0.7), 0.02), ("rsa", rsa(0.35), 0.04)
        )
        # Newer, but computed from an earlier version of the word space: history only.
        family(datetime(2026, 2, 1), "complete", ("2v2", two(0.6, space_b_sha256="c" * 64), 0.5))
        # Newest, but never finished.
        family(datetime(2026, 3, 1), "running", ("2v2", two(0.9), 0.01))
    result = run_sql(warehouse, "SELECT * FROM layer_curves")
    assert result.columns == LAYER_CURVE_COLUMNS
    (row,) = [dict(zip(result.columns, r, strict=True)) for r in result.rows()]
    assert row["model"] == "m" and row["layer"] == "l1" and row["word_space"] == "glove"
    assert row["sweep_id"] == shown
    assert (row["accuracy_2v2"], row["p_2v2"], row["p_fdr_2v2"]) == (0.7, 0.01, 0.02)
    assert (row["rho_rsa"], row["p_fdr_rsa"]) == (0.35, 0.04)
    assert row["relative_depth"] == 0.25
