"""targets with subjects: per-subject statistics, inference over subjects, same-scale ceilings

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 01:30:00.000000

An RSA or 2 vs 2 result against an RDM space is the mean over its subjects of the comparison
with each subject's matrix (rsatoolbox's ``eval_fixed``). ``results_rsa`` and ``results_2v2``
gain ``target`` (how space B was compared: NULL for vectors, ``subjects:NORMALISE`` for an
RDM), ``n_subjects`` and the noise ceiling with the result's own comparator and concepts
(``ceiling_lower``, ``ceiling_upper``). ``subject_results`` holds each subject's statistic;
``subject_inference`` the tests and intervals over subjects, concepts or both stored beside
the concept permutation test; the view ``result_inference`` lists every inference of every
result with the units it generalises over. ``sweep_curves``, ``layer_curves`` and
``measure_curves`` gain the ceilings, so curves and ceilings are read on one scale, and never
show a result of the superseded mean-RDM method as current.

Rows stored before this revision against RDM spaces (target NULL) were computed against
minus the subjects' mean RDM: ``semwh verify`` reports them as results of a superseded method
and ``stale_results`` lists the command that recomputes them.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


RESULT_TABLES = ("results_rsa", "results_2v2")
NEW_COLUMNS = (
    ("target", sa.String(), "VARCHAR"),
    ("n_subjects", sa.Integer(), "INTEGER"),
    ("ceiling_lower", sa.Double(), "DOUBLE"),
    ("ceiling_upper", sa.Double(), "DOUBLE"),
)

SWEEP_CURVES = """
CREATE VIEW sweep_curves AS
WITH judged AS (
    -- A result against an RDM without a target was computed by the superseded mean-RDM
    -- method: never current.
    SELECT sr.sweep_id, sr.space_a, sr.space_b, sr.sweep_status,
        sr.is_current AND NOT coalesce(
            sb.kind = 'rdm' AND coalesce(t.target, r.target) IS NULL, FALSE) AS is_current
    FROM sweep_results AS sr
    LEFT JOIN spaces AS sb ON sb.name = sr.space_b
    LEFT JOIN results_2v2 AS t ON sr.test = '2v2' AND t.result_id = sr.result_id
    LEFT JOIN results_rsa AS r ON sr.test = 'rsa' AND r.result_id = sr.result_id
    WHERE sr.test IN ('2v2', 'rsa')
), pairs AS (
    SELECT sweep_id, space_a, space_b, bool_and(is_current) AS is_current,
        max(sweep_status) AS sweep_status
    FROM judged
    GROUP BY sweep_id, space_a, space_b
), ranked AS (
    SELECT p.*, sw.created_at AS sweep_created_at,
        (p.is_current AND p.sweep_status IN ('complete', 'migrated')) AS shown,
        row_number() OVER (
            PARTITION BY p.space_a, p.space_b,
                (p.is_current AND p.sweep_status IN ('complete', 'migrated'))
            ORDER BY sw.created_at DESC, p.sweep_id DESC) AS recency
    FROM pairs AS p
    JOIN sweeps AS sw ON sw.sweep_id = p.sweep_id
)
SELECT
    s.model,
    s.layer,
    s.depth_index,
    s.relative_depth,
    p.space_b AS word_space,
    t.accuracy AS accuracy_2v2,
    t.p_value AS p_2v2,
    tm.p_fdr AS p_fdr_2v2,
    r.rho AS rho_rsa,
    r.p_value AS p_rsa,
    rm.p_fdr AS p_fdr_rsa,
    p.sweep_id,
    t.null_mean AS null_mean_2v2,
    t.null_q95 AS null_q95_2v2,
    r.null_mean AS null_mean_rsa,
    r.null_q95 AS null_q95_rsa,
    coalesce(t.n_concepts, r.n_concepts) AS n_concepts,
    coalesce(t.n_permutations, r.n_permutations) AS n_permutations,
    coalesce(t.similarity, r.similarity) AS similarity,
    t.distance,
    r.method AS rsa_method,
    t.result_id AS result_id_2v2,
    r.result_id AS result_id_rsa,
    p.is_current,
    p.sweep_status,
    p.sweep_created_at,
    (p.shown AND p.recency = 1) AS is_latest,
    s.name AS space,
    coalesce(t.target, r.target) AS target,
    coalesce(t.n_subjects, r.n_subjects) AS n_subjects,
    t.ceiling_lower AS ceiling_lower_2v2,
    t.ceiling_upper AS ceiling_upper_2v2,
    r.ceiling_lower AS ceiling_lower_rsa,
    r.ceiling_upper AS ceiling_upper_rsa
FROM ranked AS p
JOIN spaces AS s ON s.name = p.space_a AND s.kind = 'layer'
LEFT JOIN sweep_members AS tm ON tm.sweep_id = p.sweep_id AND tm.test = '2v2'
    AND tm.result_id IN (SELECT result_id FROM results_2v2 AS x
        WHERE x.space_a = p.space_a AND x.space_b = p.space_b)
LEFT JOIN results_2v2 AS t ON t.result_id = tm.result_id
LEFT JOIN sweep_members AS rm ON rm.sweep_id = p.sweep_id AND rm.test = 'rsa'
    AND rm.result_id IN (SELECT result_id FROM results_rsa AS y
        WHERE y.space_a = p.space_a AND y.space_b = p.space_b)
LEFT JOIN results_rsa AS r ON r.result_id = rm.result_id
"""

LAYER_CURVES = """
CREATE VIEW layer_curves AS
SELECT model, layer, depth_index, relative_depth, word_space, accuracy_2v2, p_2v2, p_fdr_2v2,
    rho_rsa, p_rsa, p_fdr_rsa, sweep_id, null_mean_2v2, null_q95_2v2, null_mean_rsa,
    null_q95_rsa, n_concepts, n_permutations, similarity, distance, rsa_method, result_id_2v2,
    result_id_rsa, space, target, n_subjects, ceiling_lower_2v2, ceiling_upper_2v2,
    ceiling_lower_rsa, ceiling_upper_rsa
FROM sweep_curves
WHERE is_latest
"""

MEASURE_CURVES = """
CREATE VIEW measure_curves AS
WITH r AS (
    SELECT '2v2' AS measure, result_id, space_a, space_b, distance AS variant,
        accuracy AS statistic, p_value, null_mean, null_q95, n_concepts, n_permutations,
        seed, space_a_sha256, space_b_sha256, target, n_subjects, ceiling_lower, ceiling_upper
    FROM results_2v2
    UNION ALL
    SELECT 'rsa', result_id, space_a, space_b, method, rho, p_value, null_mean, null_q95,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256, target, n_subjects,
        ceiling_lower, ceiling_upper
    FROM results_rsa
    UNION ALL
    SELECT measure, result_id, space_a, space_b, variant, statistic, p_value, null_mean,
        null_q95, n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256,
        NULL, NULL, NULL, NULL
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
            FALSE)
            AND NOT coalesce(sb.kind = 'rdm' AND r.measure IN ('rsa', '2v2')
                AND r.target IS NULL, FALSE) AS is_current
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
    space_a AS space,
    target,
    n_subjects,
    ceiling_lower,
    ceiling_upper
FROM ranked
"""

RESULT_INFERENCE = """
CREATE VIEW result_inference AS
SELECT 'rsa' AS test, result_id, 'permutation' AS method, 'concepts' AS units,
    rho AS statistic, p_value, CAST(NULL AS DOUBLE PRECISION) AS ci_low,
    CAST(NULL AS DOUBLE PRECISION) AS ci_high, CAST(NULL AS DOUBLE PRECISION) AS se,
    CAST(NULL AS DOUBLE PRECISION) AS level, n_subjects,
    n_permutations AS n_resamples, FALSE AS exact, CAST(NULL AS VARCHAR) AS note
FROM results_rsa WHERE n_permutations > 0
UNION ALL
SELECT '2v2', result_id, 'permutation', 'concepts', accuracy, p_value, NULL, NULL, NULL, NULL,
    n_subjects, n_permutations, FALSE, NULL
FROM results_2v2 WHERE n_permutations > 0
UNION ALL
SELECT test, result_id, method, units, statistic, p_value, ci_low, ci_high, se, level,
    n_subjects, n_resamples, exact, note
FROM subject_inference
"""


def _dialect() -> str:
    return str(op.get_bind().dialect.name)


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _earlier(file: str, *names: str) -> list[str]:
    """View definitions of an earlier revision (restored by the downgrade)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"semwh_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [getattr(module, name) for name in names]


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS layer_curves")
    op.execute("DROP VIEW IF EXISTS sweep_curves")
    op.execute("DROP VIEW IF EXISTS measure_curves")
    for table in RESULT_TABLES:
        present = _columns(table)
        for name, kind, sql_type in NEW_COLUMNS:
            if name in present:
                continue
            if _dialect() == "duckdb":
                op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
            else:
                op.add_column(table, sa.Column(name, kind, nullable=True))
    op.create_table(
        "subject_results",
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "test", "result_id", "subject_index", name=op.f("pk_subject_results")
        ),
    )
    op.create_table(
        "subject_inference",
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("units", sa.String(), nullable=False),
        sa.Column("statistic", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("se", sa.Double(), nullable=True),
        sa.Column("level", sa.Double(), nullable=True),
        sa.Column("n_subjects", sa.Integer(), nullable=False),
        sa.Column("n_resamples", sa.Integer(), nullable=False),
        sa.Column("exact", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("test", "result_id", "method", name=op.f("pk_subject_inference")),
    )
    op.execute(SWEEP_CURVES)
    op.execute(LAYER_CURVES)
    op.execute(MEASURE_CURVES)
    op.execute(RESULT_INFERENCE)


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``). The results rows stay, their numbers unchanged; their
    per-subject values, inference over subjects and ceilings go (and where the columns stay,
    on DuckDB and SQLite, they are emptied: such a row is then a result without its subjects,
    which verify reports as superseded and stale_results lists for recomputation)."""
    return {
        t: int(conn.scalar(sa.text(f"SELECT count(*) FROM {t}")))
        for t in ("subject_results", "subject_inference")
    }


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS result_inference")
    op.execute("DROP VIEW IF EXISTS layer_curves")
    op.execute("DROP VIEW IF EXISTS sweep_curves")
    op.execute("DROP VIEW IF EXISTS measure_curves")
    op.drop_table("subject_inference")
    op.drop_table("subject_results")
    for table in RESULT_TABLES:
        if _dialect() in ("duckdb", "sqlite"):
            # The columns stay (DuckDB cannot drop columns other objects depend on); a row
            # must not claim per-subject data that is gone.
            op.execute(
                f"UPDATE {table} SET target = NULL, n_subjects = NULL, ceiling_lower = NULL, "
                "ceiling_upper = NULL WHERE target IS NOT NULL OR n_subjects IS NOT NULL"
            )
        else:
            for name, _, _ in NEW_COLUMNS:
                op.drop_column(table, name)
    for view in _earlier("0003_sweep_families.py", "SWEEP_CURVES", "LAYER_CURVES"):
        op.execute(view)
    (measure_curves,) = _earlier("0004_measures.py", "MEASURE_CURVES")
    op.execute(measure_curves)
