"""one results table for every measure; results_rsa, results_2v2, results_measures as views

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 04:00:00.000000

``results`` holds every comparison of two spaces, whatever its measure: ``measure`` names it
(``rsa``, ``2v2``, ``cka``, ``knn``, ``reg2v2`` or any registered measure), ``options`` holds
the measure's own options as JSON (``{"similarity": "pearson", "method": "spearman"}``,
``{"estimator": "unbiased"}``, ...) with their hash ``options_sha256`` (the reuse key
revision 0004 stored for the measures: SHA-256 of ``{"measure": ..., **options}`` as
canonical JSON) and ``variant`` their readable label; the columns every measure shares
(spaces, content hashes, concept set, statistic, p, null reference, seed, versions, subjects
and ceilings) are columns. A new measure needs no table or column of its own.

Every row of ``results_rsa``, ``results_2v2`` and ``results_measures`` moves with its
``result_id`` (all three drew their ids from ``results_id_seq``, as ``results_diff`` and
``results_recovery`` do), so ``sweep_members``, ``permutation_nulls``, ``subject_results``,
``subject_inference``, ``grid_cells`` and ``results_diff``, keyed by (test, result_id), still
name the same results. The three tables become views with their columns, names, order and
types unchanged (``rho`` and ``accuracy`` are the statistic; ``method``, ``distance``,
``tie_tol``, ``estimator``, ``k`` and ``penalties`` come from the options), so every saved
query still runs. ``sweep_results`` and ``measure_curves`` read ``results`` directly (a
registered measure shows up in them with its subjects and ceilings); ``sweep_curves``,
``layer_curves`` and ``result_inference`` are recreated unchanged over the views.

The downgrade moves the rows back. Rows of a measure other than RSA and 2 vs 2 go to
``results_measures``, which has no columns for similarity, bootstrap intervals, subjects,
ceilings or options other than estimator, k, distance, penalties and tie_tol: such values
are lost, and ``semwh db downgrade`` counts the rows that have any.
"""

import hashlib
import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OLD_TABLES = ("results_rsa", "results_2v2", "results_measures")
#: Views that read the old tables, dropped before and recreated after the move.
DEPENDENT_VIEWS = (
    "result_inference",
    "layer_curves",
    "sweep_curves",
    "measure_curves",
    "sweep_results",
)
#: Options results_measures has columns for (revisions 0004 to 0007).
MEASURE_OPTION_COLUMNS = ("estimator", "k", "distance", "penalties", "tie_tol")
BATCH = 1000

_SHARED = """space_a, space_b, n_concepts, concepts_sha256, space_a_sha256, space_b_sha256,
    similarity, p_value, n_permutations, seed, bootstrap, analysis_version, null_mean,
    null_q95, ci_low, ci_high, created_at"""

RESULTS_RSA = f"""
CREATE VIEW results_rsa AS
SELECT result_id, analysis_id, options->>'method' AS method, statistic AS rho,
    {_SHARED}, target, n_subjects, ceiling_lower, ceiling_upper
FROM results
WHERE measure = 'rsa'
"""

RESULTS_2V2 = f"""
CREATE VIEW results_2v2 AS
SELECT result_id, analysis_id, options->>'distance' AS distance, n_pairs,
    statistic AS accuracy, {_SHARED}, CAST(options->>'tie_tol' AS DOUBLE PRECISION) AS tie_tol,
    target, n_subjects, ceiling_lower, ceiling_upper
FROM results
WHERE measure = '2v2'
"""

# k and tie_tol are read for the built-in measures only: a plugin's option of the same name
# may be of any type (its options stay in results.options).
# penalties: the JSON text the column held, as the options document stores it (json.dumps
# of the list: "[0.001, 1e-05]"); ``->>`` would write the numbers anew ("[0.001,0.00001]").
_PENALTIES_DUCKDB = (
    """regexp_extract(CAST(options AS VARCHAR), '"penalties":\\s*(\\[[^\\]]*\\])', 1)"""
)
# PostgreSQL has no regexp_extract; substring(... from pattern) returns the same group.
_PENALTIES_POSTGRES = (
    """substring(CAST(options AS VARCHAR) from '"penalties":\\s*(\\[[^\\]]*\\])')"""
)
RESULTS_MEASURES = f"""
CREATE VIEW results_measures AS
SELECT result_id, analysis_id, measure, variant, space_a, space_b, n_concepts,
    concepts_sha256, space_a_sha256, space_b_sha256, statistic, p_value, n_permutations, seed,
    options->>'estimator' AS estimator,
    CASE WHEN measure IN ('cka', 'knn', 'reg2v2') THEN CAST(options->>'k' AS INTEGER) END AS k,
    options->>'distance' AS distance,
    NULLIF({_PENALTIES_DUCKDB}, '')
        AS penalties,
    CASE WHEN measure IN ('cka', 'knn', 'reg2v2')
        THEN CAST(options->>'tie_tol' AS DOUBLE PRECISION) END AS tie_tol,
    n_pairs, options_sha256, analysis_version, null_mean, null_q95, created_at
FROM results
WHERE measure NOT IN ('rsa', '2v2')
"""

# Every stored result by the name families know it by (sweep_results' CTE).
_RESULTS = """
    SELECT measure AS test, result_id, space_a, space_b, statistic, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results
    UNION ALL
    SELECT 'recovery', result_id, space_a, space_b, accuracy, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_recovery
    UNION ALL
    SELECT 'diff', result_id, space_a, space_b, difference, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_diff
"""

_CURVE_ROWS = """(
    SELECT measure, result_id, space_a, space_b, variant, statistic, p_value, null_mean,
        null_q95, n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256, target,
        n_subjects, ceiling_lower, ceiling_upper
    FROM results
)"""


def in_dialect(sql: str) -> str:
    """A view's SQL for the registry's database (the texts above are DuckDB's)."""
    if op.get_bind().dialect.name == "postgresql":
        return sql.replace(_PENALTIES_DUCKDB, _PENALTIES_POSTGRES)
    return sql


def _earlier(file: str) -> Any:
    """An earlier revision's module (its view definitions and table builders)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"semwh_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _views() -> dict[str, str]:
    """The views of this revision that read results (besides the three legacy views)."""
    r4, r7 = _earlier("0004_measures.py"), _earlier("0007_subject_targets.py")
    curves = r7.MEASURE_CURVES
    start = curves.index("WITH r AS (") + len("WITH r AS ")
    end = curves.index(", m AS (")
    return {
        "sweep_results": r4._SWEEP_RESULTS.format(results=_RESULTS),
        "sweep_curves": r7.SWEEP_CURVES,
        "layer_curves": r7.LAYER_CURVES,
        "measure_curves": curves[:start] + _CURVE_ROWS + curves[end:],
        "result_inference": r7.RESULT_INFERENCE,
    }


def _options_sha256(measure: str, options: Mapping[str, Any]) -> str:
    text = json.dumps(
        {"measure": measure, **options}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


_RESULT_COLUMNS = (
    "result_id", "analysis_id", "measure", "space_a", "space_b", "n_concepts",
    "concepts_sha256", "space_a_sha256", "space_b_sha256", "options", "options_sha256",
    "variant", "similarity", "statistic", "n_pairs", "p_value", "n_permutations", "seed",
    "bootstrap", "analysis_version", "null_mean", "null_q95", "ci_low", "ci_high", "target",
    "n_subjects", "ceiling_lower", "ceiling_upper", "created_at",
)  # fmt: skip


def _results_table() -> sa.TableClause:
    return sa.table(
        "results",
        *(sa.column(name) for name in _RESULT_COLUMNS if name != "options"),
        sa.column("options", sa.JSON()),
    )


def _create_results() -> None:
    op.create_table(
        "results",
        sa.Column("result_id", ID, autoincrement=False, nullable=False),
        sa.Column("analysis_id", ID, autoincrement=False, nullable=False),
        sa.Column("measure", sa.String(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("space_a_sha256", sa.String(), nullable=True),
        sa.Column("space_b_sha256", sa.String(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("options_sha256", sa.String(), nullable=False),
        sa.Column("variant", sa.String(), nullable=False),
        sa.Column("similarity", sa.String(), nullable=True),
        sa.Column("statistic", sa.Double(), nullable=False),
        sa.Column("n_pairs", sa.BigInteger(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("bootstrap", sa.Integer(), nullable=False),
        sa.Column("analysis_version", sa.Integer(), nullable=False),
        sa.Column("null_mean", sa.Double(), nullable=True),
        sa.Column("null_q95", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("n_subjects", sa.Integer(), nullable=True),
        sa.Column("ceiling_lower", sa.Double(), nullable=True),
        sa.Column("ceiling_upper", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results")),
    )
    op.create_index(op.f("ix_results_analysis_id"), "results", ["analysis_id"], unique=False)
    op.create_index(
        "ix_results_measure_spaces", "results", ["measure", "space_a", "space_b"], unique=False
    )


def _rows(conn: sa.Connection, sql: str) -> Iterator[dict[str, Any]]:
    for row in conn.execute(sa.text(sql)).mappings():
        yield dict(row)


def _insert(conn: sa.Connection, table: Any, rows: Iterator[dict[str, Any]]) -> int:
    batch: list[dict[str, Any]] = []
    n = 0
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            conn.execute(table.insert(), batch)
            n += len(batch)
            batch = []
    if batch:
        conn.execute(table.insert(), batch)
        n += len(batch)
    return n


def _shared(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _RESULT_COLUMNS}


def _up_rsa(row: dict[str, Any]) -> dict[str, Any]:
    options = {"similarity": row["similarity"], "method": row["method"]}
    return {
        **_shared(row),
        "measure": "rsa",
        "options": options,
        "options_sha256": _options_sha256("rsa", options),
        "variant": row["method"],
        "statistic": row["rho"],
        "n_pairs": None,
    }


def _up_2v2(row: dict[str, Any]) -> dict[str, Any]:
    options = {
        "similarity": row["similarity"],
        "distance": row["distance"],
        "tie_tol": float(row["tie_tol"]),
    }
    return {
        **_shared(row),
        "measure": "2v2",
        "options": options,
        "options_sha256": _options_sha256("2v2", options),
        "variant": row["distance"],
        "statistic": row["accuracy"],
    }


def _up_measure(row: dict[str, Any]) -> dict[str, Any]:
    options = {
        name: json.loads(row[name]) if name == "penalties" else row[name]
        for name in MEASURE_OPTION_COLUMNS
        if row[name] is not None
    }
    return {**_shared(row), "options": options, "similarity": None, "bootstrap": 0}


def upgrade() -> None:
    conn = op.get_bind()
    for view in DEPENDENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    _create_results()
    results = _results_table()
    for table, move in (
        ("results_rsa", _up_rsa),
        ("results_2v2", _up_2v2),
        ("results_measures", _up_measure),
    ):
        rows = _rows(conn, f"SELECT * FROM {table} ORDER BY result_id")
        _insert(conn, results, (move(row) for row in list(rows)))
    for table in OLD_TABLES:
        op.drop_table(table)
    for view in (RESULTS_RSA, RESULTS_2V2, RESULTS_MEASURES, *_views().values()):
        op.execute(in_dialect(view))


def _options(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return dict(loaded or {})


#: The measures whose options results_measures has columns for.
BUILT_IN_VECTOR_MEASURES = ("cka", "knn", "reg2v2")


def _lost(row: Mapping[str, Any]) -> bool:
    """Whether a row of another measure than RSA or 2 vs 2 holds values results_measures
    has no column for (a plugin measure's options, subjects, intervals...)."""
    options = set(_options(row["options"]))
    if row["measure"] not in BUILT_IN_VECTOR_MEASURES:
        return bool(options) or bool(row["bootstrap"])
    extra = options - set(MEASURE_OPTION_COLUMNS)
    values = (row[name] for name in ("similarity", "ci_low", "ci_high", "target", "n_subjects"))
    ceilings = (row["ceiling_lower"], row["ceiling_upper"])
    return (
        bool(extra)
        or bool(row["bootstrap"])
        or any(v is not None for v in values)
        or any(v is not None for v in ceilings)
    )


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``). Every row moves back; a row of a measure other than
    RSA and 2 vs 2 with values results_measures has no column for (similarity, bootstrap
    interval, subjects, ceilings, other options) loses them and is counted."""
    rows = _rows(
        conn,
        "SELECT measure, options, similarity, bootstrap, ci_low, ci_high, target, n_subjects, "
        "ceiling_lower, ceiling_upper FROM results WHERE measure NOT IN ('rsa', '2v2')",
    )
    lost = sum(map(_lost, rows))
    return {"results: option and subject values results_measures has no column for": lost}


def _add_subject_columns(table: str) -> None:
    """The columns revision 0007 added to results_rsa and results_2v2, added the same way."""
    for name, kind, sql_type in _earlier("0007_subject_targets.py").NEW_COLUMNS:
        if op.get_bind().dialect.name == "duckdb":
            op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
        else:
            op.add_column(table, sa.Column(name, kind, nullable=True))


_SHARED_NAMES = tuple(n.strip() for n in _SHARED.split(","))


def _down(row: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The older table of a ``results`` row and its values there."""
    options = _options(row["options"])
    base = {"result_id": row["result_id"], "analysis_id": row["analysis_id"]}
    subjects = {n: row[n] for n in ("target", "n_subjects", "ceiling_lower", "ceiling_upper")}
    if row["measure"] == "rsa":
        shared = {n: row[n] for n in _SHARED_NAMES}
        return "results_rsa", {
            **base, "method": options.get("method", row["variant"]), "rho": row["statistic"],
            **shared, **subjects,
        }  # fmt: skip
    if row["measure"] == "2v2":
        shared = {n: row[n] for n in _SHARED_NAMES}
        return "results_2v2", {
            **base, "distance": options.get("distance", row["variant"]),
            "n_pairs": row["n_pairs"], "accuracy": row["statistic"], **shared,
            "tie_tol": options.get("tie_tol"), **subjects,
        }  # fmt: skip
    if row["measure"] not in BUILT_IN_VECTOR_MEASURES:
        # A measure of a plugin: results_measures has no column for its options.
        options = {}
    penalties = options.get("penalties")
    return "results_measures", {
        **base,
        **{n: row[n] for n in ("measure", "variant", "space_a", "space_b", "n_concepts")},
        **{n: row[n] for n in ("concepts_sha256", "space_a_sha256", "space_b_sha256")},
        **{n: row[n] for n in ("statistic", "p_value", "n_permutations", "seed")},
        "estimator": options.get("estimator"),
        "k": options.get("k"),
        "distance": options.get("distance"),
        "penalties": None if penalties is None else json.dumps(list(penalties)),
        "tie_tol": options.get("tie_tol"),
        **{n: row[n] for n in ("n_pairs", "options_sha256", "analysis_version")},
        **{n: row[n] for n in ("null_mean", "null_q95", "created_at")},
    }


def downgrade() -> None:
    conn = op.get_bind()
    for view in (*DEPENDENT_VIEWS, *OLD_TABLES):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    r3 = _earlier("0003_sweep_families.py")
    r3._create_rsa(True)
    r3._create_2v2(True)
    _earlier("0004_measures.py").create_results_measures()
    for table in ("results_rsa", "results_2v2"):
        _add_subject_columns(table)
    by_table: dict[str, list[dict[str, Any]]] = {t: [] for t in OLD_TABLES}
    for row in _rows(conn, "SELECT * FROM results ORDER BY result_id"):
        table, values = _down(row)
        by_table[table].append(values)
    for table, rows in by_table.items():
        if rows:
            target = sa.table(table, *(sa.column(name) for name in rows[0]))
            _insert(conn, target, iter(rows))
    op.drop_index("ix_results_measure_spaces", table_name="results")
    op.drop_index(op.f("ix_results_analysis_id"), table_name="results")
    op.drop_table("results")
    r4, r7 = _earlier("0004_measures.py"), _earlier("0007_subject_targets.py")
    for view in (
        r4.SWEEP_RESULTS,
        r7.SWEEP_CURVES,
        r7.LAYER_CURVES,
        r7.MEASURE_CURVES,
        r7.RESULT_INFERENCE,
    ):
        op.execute(view)
