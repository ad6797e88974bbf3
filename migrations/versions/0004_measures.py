"""vector-based measures (CKA, mutual k-NN, regression 2 vs 2), their curves, differences

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:30:00.000000

Adds ``results_measures`` (one row per linear CKA, mutual k-NN alignment or regression 2 vs 2
result, its measure in a column, with the options, permutation count, seed, algorithm
version and both inputs' content hashes like ``results_rsa``), lets ``sweep_results`` list
them as members of a sweep (``test`` is the measure), and adds the view ``measure_curves``:
one row per (layer space, target space, measure, variant) of every sweep, RSA and 2 vs 2
included, with ``is_latest`` marking the newest finished sweep whose inputs are current.
Adds ``noise_ceilings`` (RSA noise ceiling of an RDM space over a concept set) and
``results_diff``: the paired difference of two stored results over the same concepts
(both result ids, bootstrap interval, sign-flip p-value); sweeps list them as ``diff``.
"""

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

MEASURES = ("cka", "knn", "reg2v2", "diff")

_MEASURE_ROWS = """
    UNION ALL
    SELECT measure, result_id, space_a, space_b, statistic, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_measures
    UNION ALL
    SELECT 'diff', result_id, space_a, space_b, difference, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_diff"""


def _earlier(file: str) -> Any:
    """An earlier revision's module (its view definitions)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"semwh_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# sweep_results as revision 0003 created it (the downgrade restores it); this revision adds
# the measures' and differences' rows to its union of results.
OLD_SWEEP_RESULTS: str = _earlier("0003_sweep_families.py").SWEEP_RESULTS
_OPEN = OLD_SWEEP_RESULTS.index("WITH r AS (") + len("WITH r AS (")
_CLOSE = OLD_SWEEP_RESULTS.index("\n)\nSELECT\n")
_SWEEP_RESULTS = OLD_SWEEP_RESULTS[:_OPEN] + "{results}" + OLD_SWEEP_RESULTS[_CLOSE + 1 :]
_RESULTS = OLD_SWEEP_RESULTS[_OPEN:_CLOSE] + "{extra}\n"
SWEEP_RESULTS = _SWEEP_RESULTS.format(results=_RESULTS.format(extra=_MEASURE_ROWS))

MEASURE_CURVES = """
CREATE VIEW measure_curves AS
WITH r AS (
    SELECT '2v2' AS measure, result_id, space_a, space_b, distance AS variant,
        accuracy AS statistic, p_value, null_mean, null_q95, n_concepts, n_permutations,
        seed, space_a_sha256, space_b_sha256
    FROM results_2v2
    UNION ALL
    SELECT 'rsa', result_id, space_a, space_b, method, rho, p_value, null_mean, null_q95,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_rsa
    UNION ALL
    SELECT measure, result_id, space_a, space_b, variant, statistic, p_value, null_mean,
        null_q95, n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_measures
), m AS (
    SELECT
        sm.sweep_id,
        sm.p_fdr,
        sw.status AS sweep_status,
        sw.created_at AS sweep_created_at,
        r.*,
        s.model,
        s.layer,
        s.depth_index,
        s.relative_depth,
        coalesce(r.space_a_sha256 = s.content_sha256 AND r.space_b_sha256 = sb.content_sha256,
            FALSE) AS is_current
    FROM sweep_members AS sm
    JOIN sweeps AS sw ON sw.sweep_id = sm.sweep_id
    JOIN r ON r.measure = sm.test AND r.result_id = sm.result_id
    JOIN spaces AS s ON s.name = r.space_a AND s.kind = 'layer'
    LEFT JOIN spaces AS sb ON sb.name = r.space_b
), ranked AS (
    SELECT *,
        (is_current AND sweep_status IN ('complete', 'migrated')) AS shown,
        row_number() OVER (
            PARTITION BY space_a, space_b, measure, variant,
                (is_current AND sweep_status IN ('complete', 'migrated'))
            ORDER BY sweep_created_at DESC, sweep_id DESC) AS recency
    FROM m
)
SELECT
    model,
    layer,
    depth_index,
    relative_depth,
    space_b AS word_space,
    measure,
    variant,
    statistic,
    p_value,
    p_fdr,
    null_mean,
    null_q95,
    n_concepts,
    n_permutations,
    seed,
    sweep_id,
    result_id,
    is_current,
    (shown AND recency = 1) AS is_latest,
    space_a AS space
FROM ranked
"""


def create_results_measures() -> None:
    """The results_measures table and its indexes (revision 0008 re-creates it on downgrade)."""
    op.create_table(
        "results_measures",
        sa.Column("result_id", ID, autoincrement=False, nullable=False),
        sa.Column("analysis_id", ID, autoincrement=False, nullable=False),
        sa.Column("measure", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("space_a_sha256", sa.String(), nullable=True),
        sa.Column("space_b_sha256", sa.String(), nullable=True),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("estimator", sa.String(), nullable=True),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("distance", sa.String(), nullable=True),
        sa.Column("penalties", sa.Text(), nullable=True),
        sa.Column("tie_tol", sa.Double(), nullable=True),
        sa.Column("n_pairs", sa.BigInteger(), nullable=True),
        sa.Column("options_sha256", sa.String(), nullable=False),
        sa.Column("analysis_version", sa.Integer(), nullable=False),
        sa.Column("null_mean", sa.Double(), nullable=True),
        sa.Column("null_q95", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_measures_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_measures")),
    )
    op.create_index(
        op.f("ix_results_measures_analysis_id"), "results_measures", ["analysis_id"], unique=False
    )
    op.create_index(
        "ix_results_measures_spaces", "results_measures", ["space_a", "space_b"], unique=False
    )


def upgrade() -> None:
    create_results_measures()
    op.create_table(
        "results_diff",
        sa.Column("result_id", ID, autoincrement=False, nullable=False),
        sa.Column("analysis_id", ID, autoincrement=False, nullable=False),
        sa.Column("first_test", sa.String(), nullable=False),
        sa.Column("first_result_id", sa.BigInteger(), nullable=False),
        sa.Column("second_test", sa.String(), nullable=False),
        sa.Column("second_result_id", sa.BigInteger(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("space_a_sha256", sa.String(), nullable=True),
        sa.Column("space_b_sha256", sa.String(), nullable=True),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("first_statistic", sa.Double(), nullable=False),
        sa.Column("second_statistic", sa.Double(), nullable=False),
        sa.Column("difference", sa.Double(), nullable=False),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("level", sa.Double(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("n_bootstrap", sa.Integer(), nullable=False),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("analysis_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_diff_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_diff")),
    )
    op.create_index(
        op.f("ix_results_diff_analysis_id"), "results_diff", ["analysis_id"], unique=False
    )
    op.create_index(
        "ix_results_diff_results",
        "results_diff",
        ["first_result_id", "second_result_id"],
        unique=False,
    )
    op.create_table(
        "noise_ceilings",
        sa.Column("space", sa.String(), nullable=False),
        sa.Column("space_sha256", sa.String(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("n_subjects", sa.Integer(), nullable=False),
        sa.Column("lower", sa.Double(), nullable=False),
        sa.Column("upper", sa.Double(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "space", "space_sha256", "concepts_sha256", "method", name=op.f("pk_noise_ceilings")
        ),
    )
    op.execute("DROP VIEW IF EXISTS sweep_results")
    op.execute(SWEEP_RESULTS)
    op.execute(MEASURE_CURVES)


_LISTED = ", ".join(f"'{m}'" for m in MEASURES)
#: Sweeps with a measure or difference among their members: families the downgrade breaks.
_BROKEN = f"SELECT sweep_id FROM sweep_members WHERE test IN ({_LISTED})"


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""

    def count(sql: str) -> int:
        return int(conn.scalar(sa.text(sql)))

    return {
        "results_measures": count("SELECT count(*) FROM results_measures"),
        "results_diff": count("SELECT count(*) FROM results_diff"),
        "noise_ceilings": count("SELECT count(*) FROM noise_ceilings"),
        "permutation_nulls": count(
            f"SELECT count(*) FROM permutation_nulls WHERE test IN ({_LISTED})"
        ),
        "sweep_members": count(f"SELECT count(*) FROM sweep_members WHERE test IN ({_LISTED})"),
        "sweeps (become partial)": count(
            f"SELECT count(*) FROM sweeps WHERE sweep_id IN ({_BROKEN})"
        ),
    }


def _close_broken_families(conn: sa.Connection) -> None:
    """Sweeps that lose members become ``partial``: n_tests counts the tests they keep, and
    params keep the size of the family their FDR was computed over."""
    rows = conn.execute(
        sa.text(
            "SELECT s.sweep_id, s.n_tests, s.status, s.params, "
            f"count(CASE WHEN m.test NOT IN ({_LISTED}) THEN m.p_fdr END) AS kept "
            "FROM sweeps AS s JOIN sweep_members AS m ON m.sweep_id = s.sweep_id "
            f"WHERE s.sweep_id IN ({_BROKEN}) "
            "GROUP BY s.sweep_id, s.n_tests, s.status, s.params"
        )
    ).fetchall()
    for sweep_id, n_tests, status, params, kept in rows:
        try:
            loaded = json.loads(params or "{}")
        except ValueError:
            loaded = {}
        loaded = loaded if isinstance(loaded, dict) else {}
        loaded["downgrade"] = {
            "removed": "the measures and differences of revision 0004",
            "family_tests": int(n_tests),
            "status_before": str(status),
        }
        conn.execute(
            sa.text(
                "UPDATE sweeps SET n_tests = :n, status = 'partial', params = :p "
                "WHERE sweep_id = :id"
            ),
            {"n": int(kept), "p": json.dumps(loaded, sort_keys=True), "id": int(sweep_id)},
        )


def downgrade() -> None:
    # The measures and differences leave with their tables: their nulls and sweep
    # memberships go too. A sweep that listed one is no longer the family its FDR was
    # computed over: it is marked partial (the layer views show complete sweeps only).
    conn = op.get_bind()
    _close_broken_families(conn)
    op.execute(f"DELETE FROM permutation_nulls WHERE test IN ({_LISTED})")
    op.execute(f"DELETE FROM sweep_members WHERE test IN ({_LISTED})")
    op.execute("DROP VIEW IF EXISTS measure_curves")
    op.execute("DROP VIEW IF EXISTS sweep_results")
    op.execute(OLD_SWEEP_RESULTS)
    op.drop_table("noise_ceilings")
    op.drop_index("ix_results_diff_results", table_name="results_diff")
    op.drop_index(op.f("ix_results_diff_analysis_id"), table_name="results_diff")
    op.drop_table("results_diff")
    op.drop_index("ix_results_measures_spaces", table_name="results_measures")
    op.drop_index(op.f("ix_results_measures_analysis_id"), table_name="results_measures")
    op.drop_table("results_measures")
