"""language-model layers as spaces; grids and peak layers with a max-statistic test

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:00:00.000000

``text_models`` records each language model whose hidden layers over concept texts are stored
as spaces of kind ``text-layer`` (weights and tokenizer hashes, templates, pooling, maximum
length, truncated texts). ``grids`` and ``grid_cells`` store the family-wise inference over a
grid of results (a sweep family): the max-statistic null, the family-wise p of every cell and
of the best one, and for a peak-layer test the bootstrap interval of the peak's relative depth.
The view ``grid_results`` joins each cell with its sweep's p_fdr and both spaces' depths.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

GRID_RESULTS = """
CREATE VIEW grid_results AS
SELECT
    g.grid_id,
    g.kind,
    g.sweep_id,
    g.test,
    g.side_a,
    g.side_b,
    c.row_index,
    c.col_index,
    c.space_a,
    c.space_b,
    sa.model AS model_a,
    sa.layer AS layer_a,
    sa.relative_depth AS relative_depth_a,
    sb.model AS model_b,
    sb.layer AS layer_b,
    sb.relative_depth AS relative_depth_b,
    c.result_id,
    c.statistic,
    c.p_value,
    m.p_fdr,
    c.p_fwe,
    (c.space_a = g.best_space_a AND c.space_b = g.best_space_b) AS is_best,
    g.n_concepts,
    g.n_permutations,
    g.seed,
    g.created_at
FROM grid_cells AS c
JOIN grids AS g ON g.grid_id = c.grid_id
LEFT JOIN sweep_members AS m
    ON m.sweep_id = g.sweep_id AND m.test = c.test AND m.result_id = c.result_id
LEFT JOIN spaces AS sa ON sa.name = c.space_a
LEFT JOIN spaces AS sb ON sb.name = c.space_b
"""


def _id(name: str) -> sa.Column:
    return sa.Column(name, ID, autoincrement=False, nullable=False)


def _has_sequences() -> bool:
    return bool(op.get_bind().dialect.supports_sequences)


def upgrade() -> None:
    op.create_table(
        "text_models",
        _id("text_model_id"),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("loader", sa.String(), nullable=False),
        sa.Column("architecture", sa.String(), nullable=False),
        sa.Column("causal", sa.Boolean(), nullable=False),
        sa.Column("n_layers", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("weights_sha256", sa.String(), nullable=False),
        sa.Column("tokenizer_sha256", sa.String(), nullable=False),
        sa.Column("templates", sa.Text(), nullable=False),
        sa.Column("pooling", sa.String(), nullable=False),
        sa.Column("max_length", sa.Integer(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("n_truncated", sa.Integer(), nullable=False),
        sa.Column("truncated", sa.Text(), nullable=False),
        sa.Column("identity_sha256", sa.String(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("semwh_version", sa.String(), nullable=False),
        sa.Column("library_versions", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("text_model_id", name=op.f("pk_text_models")),
        sa.UniqueConstraint("name", name=op.f("uq_text_models_name")),
    )
    op.create_table(
        "grids",
        _id("grid_id"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("sweep_id", ID, autoincrement=False, nullable=False),
        sa.Column("analysis_id", ID, autoincrement=False, nullable=True),
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("side_a", sa.String(), nullable=False),
        sa.Column("side_b", sa.String(), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_cols", sa.Integer(), nullable=False),
        sa.Column("n_cells", sa.Integer(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("best_space_a", sa.String(), nullable=False),
        sa.Column("best_space_b", sa.String(), nullable=False),
        sa.Column("best_statistic", sa.Double(), nullable=False),
        sa.Column("p_fwe_best", sa.Double(), nullable=False),
        sa.Column("null_max", sa.Text(), nullable=False),
        sa.Column("n_bootstrap", sa.Integer(), nullable=False),
        sa.Column("level", sa.Double(), nullable=True),
        sa.Column("peak_relative_depth", sa.Double(), nullable=True),
        sa.Column("depth_ci_low", sa.Double(), nullable=True),
        sa.Column("depth_ci_high", sa.Double(), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.sweep_id"], name=op.f("fk_grids_sweep_id_sweeps")
        ),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_grids_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("grid_id", name=op.f("pk_grids")),
    )
    op.create_table(
        "grid_cells",
        _id("grid_id"),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("col_index", sa.Integer(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=True),
        sa.Column("statistic", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("p_fwe", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grid_id"], ["grids.grid_id"], name=op.f("fk_grid_cells_grid_id_grids")
        ),
        sa.PrimaryKeyConstraint("grid_id", "row_index", "col_index", name=op.f("pk_grid_cells")),
    )
    if _has_sequences():
        op.execute(sa.schema.CreateSequence(sa.Sequence("text_models_id_seq")))
        op.execute(sa.schema.CreateSequence(sa.Sequence("grids_id_seq")))
    op.execute(GRID_RESULTS)


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""
    return {
        t: int(conn.scalar(sa.text(f"SELECT count(*) FROM {t}")))
        for t in ("grids", "grid_cells", "text_models")
    }


def downgrade() -> None:
    # Text-layer spaces stay as spaces (their vectors and results are ordinary rows); only
    # their model records and the grid inference go.
    op.execute("DROP VIEW IF EXISTS grid_results")
    op.drop_table("grid_cells")
    op.drop_table("grids")
    op.drop_table("text_models")
    if _has_sequences():
        op.execute(sa.schema.DropSequence(sa.Sequence("grids_id_seq")))
        op.execute(sa.schema.DropSequence(sa.Sequence("text_models_id_seq")))
