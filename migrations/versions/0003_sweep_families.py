"""sweeps as stored families; result rows carry their inputs' content hashes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:30:00.000000

Benjamini-Hochberg FDR used to live in ``p_fdr`` columns of the shared results rows, where a
later sweep overwrote it. It now belongs to a sweep: ``sweeps`` and ``sweep_members`` (one row
per test of the family, with the p_fdr the sweep gave it) and the view ``sweep_results``. The
results tables lose ``p_fdr`` and their unique keys (results are kept as history: a
recomputation adds a row and never replaces one a sweep lists), and gain the content hashes of
both inputs, the bootstrap size, the 2 vs 2 tie tolerance and the algorithm's version.

The upgrade carries every stored ``sweep`` analysis run into a sweep (its members with the
p_fdr it recorded), and any other result with a p_fdr (a recovery call's family) into one
``migrated`` sweep per analysis run. Input hashes of old rows come from their analysis runs.

DuckDB cannot drop a column of a table that has indexes or is referenced by a foreign key, so
the three results tables (and recovery_images, which references one) are rebuilt: copied
aside, dropped, created in the new shape and filled again.
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: The 2 vs 2 tie tolerance every stored row was computed with before it was recorded.
OLD_TIE_TOL = 1e-10

# One rule for what users see as current, written once: a sweep's member is current while
# both its inputs' recorded hashes equal the spaces' content now; layer_curves shows, per
# (layer space, word space), the newest finished sweep with current results for the pair.
SWEEP_RESULTS = """
CREATE VIEW sweep_results AS
WITH r AS (
    SELECT '2v2' AS test, result_id, space_a, space_b, accuracy AS statistic, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_2v2
    UNION ALL
    SELECT 'rsa', result_id, space_a, space_b, rho, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_rsa
    UNION ALL
    SELECT 'recovery', result_id, space_a, space_b, accuracy, p_value,
        n_concepts, n_permutations, seed, space_a_sha256, space_b_sha256
    FROM results_recovery
)
SELECT
    m.sweep_id,
    m.test,
    m.result_id,
    r.space_a,
    r.space_b,
    r.statistic,
    r.p_value,
    m.p_fdr,
    r.n_concepts,
    r.n_permutations,
    r.seed,
    sw.status AS sweep_status,
    coalesce(r.space_a_sha256 = sa.content_sha256 AND r.space_b_sha256 = sb.content_sha256,
        FALSE) AS is_current
FROM sweep_members AS m
JOIN sweeps AS sw ON sw.sweep_id = m.sweep_id
JOIN r ON r.test = m.test AND r.result_id = m.result_id
LEFT JOIN spaces AS sa ON sa.name = r.space_a
LEFT JOIN spaces AS sb ON sb.name = r.space_b
"""

SWEEP_CURVES = """
CREATE VIEW sweep_curves AS
WITH pairs AS (
    SELECT sweep_id, space_a, space_b, bool_and(is_current) AS is_current,
        max(sweep_status) AS sweep_status
    FROM sweep_results
    WHERE test IN ('2v2', 'rsa')
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
    s.name AS space
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
    result_id_rsa, space
FROM sweep_curves
WHERE is_latest
"""

# The view 0001 created (restored by the downgrade).
OLD_LAYER_CURVES = """
CREATE VIEW layer_curves AS
WITH t AS (
    SELECT *, row_number() OVER (
        PARTITION BY space_a, space_b
        ORDER BY n_permutations DESC, created_at DESC, result_id DESC) AS rn
    FROM results_2v2
    WHERE similarity = 'pearson' AND distance = 'pearson'
), r AS (
    SELECT *, row_number() OVER (
        PARTITION BY space_a, space_b
        ORDER BY n_permutations DESC, created_at DESC, result_id DESC) AS rn
    FROM results_rsa
    WHERE similarity = 'pearson' AND method = 'spearman'
)
SELECT
    s.model,
    s.layer,
    s.depth_index,
    s.relative_depth,
    t.space_b AS word_space,
    t.accuracy AS accuracy_2v2,
    t.p_value AS p_2v2,
    t.p_fdr AS p_fdr_2v2,
    r.rho AS rho_rsa,
    r.p_value AS p_rsa,
    r.p_fdr AS p_fdr_rsa,
    t.n_concepts,
    t.n_permutations,
    s.name AS space
FROM spaces AS s
JOIN t ON t.space_a = s.name AND t.rn = 1
LEFT JOIN r ON r.space_a = s.name AND r.space_b = t.space_b AND r.rn = 1
WHERE s.kind = 'layer'
"""

RESULT_TABLES = ("results_rsa", "results_2v2", "results_recovery")


def _id(name: str) -> sa.Column:
    return sa.Column(name, ID, autoincrement=False, nullable=False)


def _comparison_columns(new: bool) -> list[sa.Column]:
    cols = [
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
    ]
    if new:
        cols += [
            sa.Column("space_a_sha256", sa.String(), nullable=True),
            sa.Column("space_b_sha256", sa.String(), nullable=True),
        ]
    cols += [
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=True),
    ]
    if not new:
        cols.append(sa.Column("p_fdr", sa.Double(), nullable=True))
    cols += [
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
    ]
    if new:
        cols += [
            sa.Column("bootstrap", sa.Integer(), nullable=False),
            sa.Column("analysis_version", sa.Integer(), nullable=False),
        ]
    cols += [
        sa.Column("null_mean", sa.Double(), nullable=True),
        sa.Column("null_q95", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    ]
    return cols


def _fk_analysis(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["analysis_id"],
        ["analysis_runs.analysis_id"],
        name=op.f(f"fk_{table}_analysis_id_analysis_runs"),
    )


def _create_rsa(new: bool) -> None:
    extra: list[Any] = []
    if not new:
        extra.append(
            sa.UniqueConstraint(
                "space_a",
                "space_b",
                "concepts_sha256",
                "similarity",
                "method",
                "n_permutations",
                "seed",
                name=op.f(
                    "uq_results_rsa_space_a_space_b_concepts_sha256_similarity_method_"
                    "n_permutations_seed"
                ),
            )
        )
    op.create_table(
        "results_rsa",
        _id("result_id"),
        _id("analysis_id"),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("rho", sa.Double(), nullable=False),
        *_comparison_columns(new),
        _fk_analysis("results_rsa"),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_rsa")),
        *extra,
    )
    op.create_index(
        op.f("ix_results_rsa_analysis_id"), "results_rsa", ["analysis_id"], unique=False
    )
    op.create_index("ix_results_rsa_spaces", "results_rsa", ["space_a", "space_b"], unique=False)


def _create_2v2(new: bool) -> None:
    extra: list[Any] = []
    if new:
        extra.append(sa.Column("tie_tol", sa.Double(), nullable=False))
    else:
        extra.append(
            sa.UniqueConstraint(
                "space_a",
                "space_b",
                "concepts_sha256",
                "similarity",
                "distance",
                "n_permutations",
                "seed",
                name=op.f(
                    "uq_results_2v2_space_a_space_b_concepts_sha256_similarity_distance_"
                    "n_permutations_seed"
                ),
            )
        )
    op.create_table(
        "results_2v2",
        _id("result_id"),
        _id("analysis_id"),
        sa.Column("distance", sa.String(), nullable=False),
        sa.Column("n_pairs", sa.BigInteger(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=False),
        *_comparison_columns(new),
        _fk_analysis("results_2v2"),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_2v2")),
        *extra,
    )
    op.create_index(
        op.f("ix_results_2v2_analysis_id"), "results_2v2", ["analysis_id"], unique=False
    )
    op.create_index("ix_results_2v2_spaces", "results_2v2", ["space_a", "space_b"], unique=False)


def _create_recovery(new: bool) -> None:
    cols: list[Any] = [
        _id("result_id"),
        _id("analysis_id"),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("layer", sa.String(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
    ]
    if new:
        cols += [
            sa.Column("space_a_sha256", sa.String(), nullable=True),
            sa.Column("space_b_sha256", sa.String(), nullable=True),
            sa.Column("inputs_sha256", sa.String(), nullable=True),
            sa.Column("analysis_version", sa.Integer(), nullable=False),
        ]
    cols += [
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("n_success", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
    ]
    cols.append(
        sa.Column("n_no_prediction", sa.Integer(), nullable=False)
        if new
        else sa.Column("p_fdr", sa.Double(), nullable=True)
    )
    cols += [
        sa.Column("n_visual", sa.Integer(), nullable=False),
        sa.Column("n_visual_success", sa.Integer(), nullable=False),
        sa.Column("visual_accuracy", sa.Double(), nullable=True),
        sa.Column("visual_p_value", sa.Double(), nullable=True),
        sa.Column("mean_rank_true", sa.Double(), nullable=True),
        sa.Column("median_rank_true", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        _fk_analysis("results_recovery"),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_recovery")),
    ]
    if not new:
        cols.append(
            sa.UniqueConstraint(
                "space_a",
                "space_b",
                "concepts_sha256",
                "similarity",
                name=op.f("uq_results_recovery_space_a_space_b_concepts_sha256_similarity"),
            )
        )
    op.create_table("results_recovery", *cols)
    op.create_index(
        op.f("ix_results_recovery_analysis_id"), "results_recovery", ["analysis_id"], unique=False
    )
    if new:
        op.create_index(
            "ix_results_recovery_spaces",
            "results_recovery",
            ["space_a", "space_b"],
            unique=False,
        )


def _create_recovery_images() -> None:
    op.create_table(
        "recovery_images",
        _id("result_id"),
        _id("image_id"),
        sa.Column("true_wnid", sa.String(), nullable=False),
        sa.Column("predicted_wnid", sa.String(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("score_true", sa.Double(), nullable=False),
        sa.Column("score_predicted", sa.Double(), nullable=False),
        sa.Column("visual_success", sa.Boolean(), nullable=True),
        sa.Column("rank_true", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.image_id"], name=op.f("fk_recovery_images_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results_recovery.result_id"],
            name=op.f("fk_recovery_images_result_id_results_recovery"),
        ),
        sa.PrimaryKeyConstraint("result_id", "image_id", name=op.f("pk_recovery_images")),
    )


def _columns(table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)]


def _set_aside() -> dict[str, list[str]]:
    """Copy the results tables and recovery_images to ``old_*`` tables and drop them."""
    op.execute("DROP VIEW IF EXISTS layer_curves")
    op.execute("DROP VIEW IF EXISTS sweep_curves")
    op.execute("DROP VIEW IF EXISTS sweep_results")
    columns = {}
    for table in (*RESULT_TABLES, "recovery_images"):
        columns[table] = _columns(table)
        op.execute(f"CREATE TABLE old_{table} AS SELECT * FROM {table}")
    op.drop_table("recovery_images")
    for table in RESULT_TABLES:
        for index in sa.inspect(op.get_bind()).get_indexes(table):
            # PostgreSQL lists a unique constraint's own index too; it goes with the table.
            if not index.get("duplicates_constraint"):
                op.drop_index(index["name"], table_name=table)
        op.drop_table(table)
    return columns


def _refill(table: str, old_columns: list[str], defaults: dict[str, str]) -> None:
    """INSERT the rows of ``old_<table>`` into the new ``table``; new columns from defaults."""
    new_columns = _columns(table)
    values = [c if c in old_columns else defaults.get(c, "NULL") for c in new_columns]
    op.execute(
        f"INSERT INTO {table} ({', '.join(new_columns)}) "
        f"SELECT {', '.join(values)} FROM old_{table}"
    )


def _canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _backfill_hashes(conn: sa.Connection) -> None:
    """Input hashes (and the bootstrap size) of old rows, from their analysis runs."""
    runs = {
        int(aid): (json.loads(params or "{}"), json.loads(hashes or "{}"))
        for aid, params, hashes in conn.execute(
            sa.text("SELECT analysis_id, params, input_hashes FROM analysis_runs")
        )
    }
    for table in ("results_rsa", "results_2v2"):
        rows = conn.execute(
            sa.text(f"SELECT result_id, analysis_id, space_a, space_b FROM {table}")
        ).all()
        for result_id, aid, space_a, space_b in rows:
            params, hashes = runs.get(int(aid), ({}, {}))
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET space_a_sha256 = :a, space_b_sha256 = :b, "
                    "bootstrap = :boot WHERE result_id = :id"
                ),
                {
                    "a": hashes.get(space_a),
                    "b": hashes.get(space_b),
                    "boot": int(params.get("bootstrap", 0) or 0),
                    "id": result_id,
                },
            )
    rows = conn.execute(
        sa.text("SELECT result_id, analysis_id, space_a, space_b FROM results_recovery")
    ).all()
    for result_id, aid, space_a, space_b in rows:
        _, hashes = runs.get(int(aid), ({}, {}))
        layer = hashes.get(space_a)
        layer = layer if isinstance(layer, dict) else {}
        conn.execute(
            sa.text(
                "UPDATE results_recovery SET space_a_sha256 = :a, space_b_sha256 = :b, "
                "inputs_sha256 = :i WHERE result_id = :id"
            ),
            {
                "a": layer.get(space_a),
                "b": layer.get(space_b),
                "i": _canonical_sha256(layer) if layer else None,
                "id": result_id,
            },
        )


def _carry_sweeps(conn: sa.Connection, old_fdr: dict[tuple[str, int], float | None]) -> int:
    """Sweeps from stored ``sweep`` analysis runs and from leftover p_fdr values; the next id."""
    existing = {
        test: {int(r[0]) for r in conn.execute(sa.text(f"SELECT result_id FROM {table}"))}
        for test, table in (
            ("rsa", "results_rsa"),
            ("2v2", "results_2v2"),
            ("recovery", "results_recovery"),
        )
    }
    sweeps = sa.table(
        "sweeps",
        sa.column("sweep_id"),
        sa.column("created_at"),
        sa.column("finished_at"),
        sa.column("models"),
        sa.column("word_spaces"),
        sa.column("tests"),
        sa.column("n_permutations"),
        sa.column("seed"),
        sa.column("n_tests"),
        sa.column("status"),
        sa.column("params"),
        sa.column("analysis_id"),
    )
    members = sa.table(
        "sweep_members",
        sa.column("sweep_id"),
        sa.column("test"),
        sa.column("result_id"),
        sa.column("p_fdr"),
    )
    next_id = 1
    covered: set[tuple[str, int]] = set()

    def add(
        run: Any, params: dict[str, Any], found: list[tuple[str, int, float | None]], status: str
    ) -> None:
        nonlocal next_id
        tests = list(dict.fromkeys(t for t, _, _ in found))
        conn.execute(
            sweeps.insert().values(
                sweep_id=next_id,
                created_at=run.started_at or datetime(1970, 1, 1),
                finished_at=run.finished_at,
                models=json.dumps(_names(params, "models", "model")),
                word_spaces=json.dumps(_names(params, "word_spaces", "word_space")),
                tests=json.dumps(tests),
                n_permutations=int(params.get("permutations", 0) or 0),
                seed=params.get("seed"),
                n_tests=sum(1 for _, _, p in found if p is not None),
                status=status,
                params=json.dumps({"carried_from_analysis_run": int(run.analysis_id)}),
                analysis_id=int(run.analysis_id),
            )
        )
        for test, result_id, p_fdr in found:
            conn.execute(
                members.insert().values(
                    sweep_id=next_id, test=test, result_id=result_id, p_fdr=p_fdr
                )
            )
            covered.add((test, result_id))
        next_id += 1

    runs = conn.execute(
        sa.text(
            "SELECT analysis_id, kind, params, started_at, finished_at FROM analysis_runs "
            "ORDER BY analysis_id"
        )
    ).all()
    by_id = {int(run.analysis_id): run for run in runs}
    for run in runs:
        if run.kind != "sweep":
            continue
        params = json.loads(run.params or "{}")
        found: list[tuple[str, int, float | None]] = []
        for member in params.get("members", []):
            key = (str(member["test"]), int(member["result_id"]))
            if key[1] in existing.get(key[0], set()) and key not in {(t, i) for t, i, _ in found}:
                found.append((key[0], key[1], member.get("p_fdr")))
        for result_id in params.get("recovery_members", []):
            if int(result_id) in existing["recovery"]:
                found.append(("recovery", int(result_id), old_fdr.get(("recovery", result_id))))
        add(run, params, found, "complete")
    # Families outside sweeps (a recovery call's layers): one migrated sweep per analysis run.
    leftovers: dict[int, list[tuple[str, int, float | None]]] = {}
    for (test, result_id), (aid, p_fdr) in _fdr_owner(conn).items():
        if p_fdr is not None and (test, result_id) not in covered:
            leftovers.setdefault(aid, []).append((test, result_id, p_fdr))
    for aid in sorted(leftovers):
        run = by_id.get(aid)
        if run is not None:
            add(run, json.loads(run.params or "{}"), sorted(leftovers[aid]), "migrated")
    return next_id


def _names(params: dict[str, Any], plural: str, single: str) -> list[str]:
    if plural in params:
        return [str(v) for v in params[plural]]
    return [str(params[single])] if params.get(single) is not None else []


def _fdr_owner(conn: sa.Connection) -> dict[tuple[str, int], tuple[int, float | None]]:
    out: dict[tuple[str, int], tuple[int, float | None]] = {}
    for test, table in (
        ("rsa", "old_results_rsa"),
        ("2v2", "old_results_2v2"),
        ("recovery", "old_results_recovery"),
    ):
        for result_id, aid, p_fdr in conn.execute(
            sa.text(f"SELECT result_id, analysis_id, p_fdr FROM {table}")
        ):
            out[(test, int(result_id))] = (int(aid), p_fdr)
    return out


def _has_sequences() -> bool:
    return bool(op.get_bind().dialect.supports_sequences)


def _create_sweeps() -> None:
    op.create_table(
        "sweeps",
        _id("sweep_id"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("models", sa.Text(), nullable=False),
        sa.Column("word_spaces", sa.Text(), nullable=False),
        sa.Column("tests", sa.Text(), nullable=False),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("n_tests", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("analysis_id", ID, autoincrement=False, nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_sweeps_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("sweep_id", name=op.f("pk_sweeps")),
    )
    op.create_table(
        "sweep_members",
        _id("sweep_id"),
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("p_fdr", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.sweep_id"], name=op.f("fk_sweep_members_sweep_id_sweeps")
        ),
        sa.PrimaryKeyConstraint("sweep_id", "test", "result_id", name=op.f("pk_sweep_members")),
    )


def upgrade() -> None:
    conn = op.get_bind()
    old = _set_aside()
    _create_rsa(new=True)
    _create_2v2(new=True)
    _create_recovery(new=True)
    _create_recovery_images()
    _refill("results_rsa", old["results_rsa"], {"bootstrap": "0", "analysis_version": "1"})
    _refill(
        "results_2v2",
        old["results_2v2"],
        {"bootstrap": "0", "analysis_version": "1", "tie_tol": repr(OLD_TIE_TOL)},
    )
    _refill(
        "results_recovery",
        old["results_recovery"],
        {"analysis_version": "1", "n_no_prediction": "0"},
    )
    _refill("recovery_images", old["recovery_images"], {})
    _backfill_hashes(conn)
    _create_sweeps()
    fdr = {key: p_fdr for key, (_, p_fdr) in _fdr_owner(conn).items()}
    next_id = _carry_sweeps(conn, fdr)
    for table in (*RESULT_TABLES, "recovery_images"):
        op.execute(f"DROP TABLE old_{table}")
    if _has_sequences():
        op.execute(sa.schema.CreateSequence(sa.Sequence("sweeps_id_seq", start=next_id)))
    op.execute(SWEEP_RESULTS)
    op.execute(SWEEP_CURVES)
    op.execute(LAYER_CURVES)


#: The unique key of each results table before sweep families kept recomputations as history.
OLD_KEYS = {
    "results_rsa": "space_a, space_b, concepts_sha256, similarity, method, n_permutations, seed",
    "results_2v2": "space_a, space_b, concepts_sha256, similarity, distance, n_permutations, seed",
    "results_recovery": "space_a, space_b, concepts_sha256, similarity",
}


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""

    def count(sql: str) -> int:
        return int(conn.scalar(sa.text(sql)))

    drops = {t: count(f"SELECT count(*) FROM {t}") for t in ("sweeps", "sweep_members")}
    for table, key in OLD_KEYS.items():
        kept = count(f"SELECT count(*) FROM (SELECT max(result_id) FROM {table} GROUP BY {key}) k")
        drops[table] = count(f"SELECT count(*) FROM {table}") - kept
    drops["recovery_images"] = count(
        "SELECT count(*) FROM recovery_images WHERE result_id NOT IN (SELECT max(result_id) "
        f"FROM results_recovery GROUP BY {OLD_KEYS['results_recovery']})"
    )
    return drops


def downgrade() -> None:
    # Each result gets back the p_fdr of the newest sweep that lists it. Rows the old unique
    # keys cannot hold together (recomputations kept as history) keep only the newest.
    conn = op.get_bind()
    latest_fdr: dict[tuple[str, int], float | None] = {}
    for test, result_id, p_fdr in conn.execute(
        sa.text(
            "SELECT m.test, m.result_id, m.p_fdr FROM sweep_members AS m "
            "JOIN sweeps AS s ON s.sweep_id = m.sweep_id ORDER BY s.created_at, s.sweep_id"
        )
    ):
        latest_fdr[(str(test), int(result_id))] = p_fdr
    old = _set_aside()
    op.drop_table("sweep_members")
    op.drop_table("sweeps")
    if _has_sequences():
        op.execute(sa.schema.DropSequence(sa.Sequence("sweeps_id_seq")))
    for table, key in OLD_KEYS.items():
        op.execute(
            f"DELETE FROM old_{table} WHERE result_id NOT IN (SELECT max(result_id) "
            f"FROM old_{table} GROUP BY {key})"
        )
    op.execute(
        "DELETE FROM old_recovery_images WHERE result_id NOT IN "
        "(SELECT result_id FROM old_results_recovery)"
    )
    _create_rsa(new=False)
    _create_2v2(new=False)
    _create_recovery(new=False)
    _create_recovery_images()
    for table in RESULT_TABLES:
        _refill(table, old[table], {})
    _refill("recovery_images", old["recovery_images"], {})
    for (test, result_id), p_fdr in latest_fdr.items():
        table = {"rsa": "results_rsa", "2v2": "results_2v2", "recovery": "results_recovery"}[test]
        conn.execute(
            sa.text(f"UPDATE {table} SET p_fdr = :p WHERE result_id = :id"),
            {"p": p_fdr, "id": result_id},
        )
    for table in (*RESULT_TABLES, "recovery_images"):
        op.execute(f"DROP TABLE old_{table}")
    op.execute(OLD_LAYER_CURVES)
