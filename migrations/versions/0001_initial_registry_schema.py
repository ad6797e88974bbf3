"""initial registry schema

Revision ID: 0001
Revises: none
Create Date: 2026-11-28 02:53:13.820587
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Surrogate keys draw from these sequences where the database has sequences (DuckDB,
# PostgreSQL); SQLite autoincrements its INTEGER PRIMARY KEY instead.
SEQUENCES = (
    "sources_id_seq",
    "images_id_seq",
    "vision_models_id_seq",
    "layers_id_seq",
    "word_models_id_seq",
    "spaces_id_seq",
    "extraction_runs_id_seq",
    "vector_files_id_seq",
    "analysis_runs_id_seq",
    "results_id_seq",
)

# The latest result per pair of spaces, with the default method options (Pearson similarity,
# 1 - Pearson distance for the 2 vs 2, Spearman RSA), joined to the layer's depth.
LAYER_CURVES = """
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


def _has_sequences() -> bool:
    return bool(op.get_bind().dialect.supports_sequences)


def upgrade() -> None:
    if _has_sequences():
        for name in SEQUENCES:
            op.execute(sa.schema.CreateSequence(sa.Sequence(name)))
    op.create_table(
        "analysis_runs",
        sa.Column(
            "analysis_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("params_sha256", sa.String(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("semwh_version", sa.String(), nullable=False),
        sa.Column("library_versions", sa.Text(), nullable=False),
        sa.Column("input_hashes", sa.Text(), nullable=False),
        sa.Column("device", sa.String(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("analysis_id", name=op.f("pk_analysis_runs")),
    )
    op.create_index(
        op.f("ix_analysis_runs_params_sha256"), "analysis_runs", ["params_sha256"], unique=False
    )
    op.create_table(
        "concepts",
        sa.Column("wnid", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("lemmas", sa.Text(), nullable=True),
        sa.Column("gloss", sa.Text(), nullable=True),
        sa.Column("lexname", sa.String(), nullable=True),
        sa.Column("hypernym_path", sa.Text(), nullable=True),
        sa.Column("imagenet_index", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("wnid", name=op.f("pk_concepts")),
        sa.UniqueConstraint("imagenet_index", name=op.f("uq_concepts_imagenet_index")),
    )
    op.create_table(
        "permutation_nulls",
        sa.Column("test", sa.String(), nullable=False),
        sa.Column("result_id", sa.BigInteger(), nullable=False),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("values", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("test", "result_id", name=op.f("pk_permutation_nulls")),
    )
    op.create_table(
        "sources",
        sa.Column(
            "source_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.String(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_sources")),
        sa.UniqueConstraint(
            "kind", "name", "sha256", "options", name=op.f("uq_sources_kind_name_sha256_options")
        ),
    )
    op.create_table(
        "vision_models",
        sa.Column(
            "model_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("architecture", sa.String(), nullable=False),
        sa.Column("weights", sa.String(), nullable=False),
        sa.Column("weights_sha256", sa.String(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("preprocessing", sa.Text(), nullable=False),
        sa.Column("n_parameters", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_vision_models")),
        sa.UniqueConstraint("name", name=op.f("uq_vision_models_name")),
    )
    op.create_table(
        "extraction_runs",
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "model_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("params_sha256", sa.String(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("n_shards", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("device", sa.String(), nullable=True),
        sa.Column("images_per_s", sa.Double(), nullable=True),
        sa.Column("versions", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["vision_models.model_id"],
            name=op.f("fk_extraction_runs_model_id_vision_models"),
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_extraction_runs")),
        sa.UniqueConstraint("params_sha256", name=op.f("uq_extraction_runs_params_sha256")),
    )
    op.create_table(
        "images",
        sa.Column(
            "image_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("wnid", sa.String(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("split", sa.String(), nullable=True),
        sa.Column("source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.source_id"], name=op.f("fk_images_source_id_sources")
        ),
        sa.ForeignKeyConstraint(["wnid"], ["concepts.wnid"], name=op.f("fk_images_wnid_concepts")),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )
    op.create_index(op.f("ix_images_wnid"), "images", ["wnid"], unique=False)
    op.create_table(
        "layers",
        sa.Column(
            "layer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "model_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("module", sa.String(), nullable=False),
        sa.Column("depth_index", sa.Integer(), nullable=False),
        sa.Column("relative_depth", sa.Double(), nullable=False),
        sa.Column("output_shape", sa.String(), nullable=False),
        sa.Column("pooling", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["vision_models.model_id"], name=op.f("fk_layers_model_id_vision_models")
        ),
        sa.PrimaryKeyConstraint("layer_id", name=op.f("pk_layers")),
        sa.UniqueConstraint("model_id", "depth_index", name=op.f("uq_layers_model_id_depth_index")),
        sa.UniqueConstraint("model_id", "module", name=op.f("uq_layers_model_id_module")),
    )
    op.create_table(
        "results_2v2",
        sa.Column(
            "result_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "analysis_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("distance", sa.String(), nullable=False),
        sa.Column("n_pairs", sa.BigInteger(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("p_fdr", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("null_mean", sa.Double(), nullable=True),
        sa.Column("null_q95", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_2v2_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_2v2")),
        sa.UniqueConstraint(
            "space_a",
            "space_b",
            "concepts_sha256",
            "similarity",
            "distance",
            "n_permutations",
            "seed",
            name=op.f(
                "uq_results_2v2_space_a_space_b_concepts_sha256_similarity_distance_n_permutations_seed"
            ),
        ),
    )
    op.create_index(
        op.f("ix_results_2v2_analysis_id"), "results_2v2", ["analysis_id"], unique=False
    )
    op.create_index("ix_results_2v2_spaces", "results_2v2", ["space_a", "space_b"], unique=False)
    op.create_table(
        "results_recovery",
        sa.Column(
            "result_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "analysis_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("layer", sa.String(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("n_success", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Double(), nullable=True),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("p_fdr", sa.Double(), nullable=True),
        sa.Column("n_visual", sa.Integer(), nullable=False),
        sa.Column("n_visual_success", sa.Integer(), nullable=False),
        sa.Column("visual_accuracy", sa.Double(), nullable=True),
        sa.Column("visual_p_value", sa.Double(), nullable=True),
        sa.Column("mean_rank_true", sa.Double(), nullable=True),
        sa.Column("median_rank_true", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_recovery_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_recovery")),
        sa.UniqueConstraint(
            "space_a",
            "space_b",
            "concepts_sha256",
            "similarity",
            name=op.f("uq_results_recovery_space_a_space_b_concepts_sha256_similarity"),
        ),
    )
    op.create_index(
        op.f("ix_results_recovery_analysis_id"), "results_recovery", ["analysis_id"], unique=False
    )
    op.create_table(
        "results_rsa",
        sa.Column(
            "result_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "analysis_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("rho", sa.Double(), nullable=False),
        sa.Column("space_a", sa.String(), nullable=False),
        sa.Column("space_b", sa.String(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("concepts_sha256", sa.String(), nullable=False),
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("p_value", sa.Double(), nullable=True),
        sa.Column("p_fdr", sa.Double(), nullable=True),
        sa.Column("n_permutations", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("null_mean", sa.Double(), nullable=True),
        sa.Column("null_q95", sa.Double(), nullable=True),
        sa.Column("ci_low", sa.Double(), nullable=True),
        sa.Column("ci_high", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["analysis_runs.analysis_id"],
            name=op.f("fk_results_rsa_analysis_id_analysis_runs"),
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_results_rsa")),
        sa.UniqueConstraint(
            "space_a",
            "space_b",
            "concepts_sha256",
            "similarity",
            "method",
            "n_permutations",
            "seed",
            name=op.f(
                "uq_results_rsa_space_a_space_b_concepts_sha256_similarity_method_n_permutations_seed"
            ),
        ),
    )
    op.create_index(
        op.f("ix_results_rsa_analysis_id"), "results_rsa", ["analysis_id"], unique=False
    )
    op.create_index("ix_results_rsa_spaces", "results_rsa", ["space_a", "space_b"], unique=False)
    op.create_table(
        "word_models",
        sa.Column(
            "word_model_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vocab_size", sa.BigInteger(), nullable=False),
        sa.Column("multiword", sa.String(), nullable=False),
        sa.Column("source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.source_id"], name=op.f("fk_word_models_source_id_sources")
        ),
        sa.PrimaryKeyConstraint("word_model_id", name=op.f("pk_word_models")),
        sa.UniqueConstraint("name", name=op.f("uq_word_models_name")),
    )
    op.create_table(
        "extraction_shards",
        sa.Column(
            "run_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("shard_index", sa.Integer(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["extraction_runs.run_id"],
            name=op.f("fk_extraction_shards_run_id_extraction_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "shard_index", name=op.f("pk_extraction_shards")),
    )
    op.create_table(
        "predictions",
        sa.Column("model", sa.String(), nullable=False),
        sa.Column(
            "image_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("wnid", sa.String(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.image_id"], name=op.f("fk_predictions_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["model"], ["vision_models.name"], name=op.f("fk_predictions_model_vision_models")
        ),
        sa.PrimaryKeyConstraint("model", "image_id", "rank", name=op.f("pk_predictions")),
    )
    op.create_table(
        "recovery_images",
        sa.Column(
            "result_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "image_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
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
    op.create_table(
        "spaces",
        sa.Column(
            "space_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("layer", sa.String(), nullable=True),
        sa.Column("layer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "word_model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("depth_index", sa.Integer(), nullable=True),
        sa.Column("relative_depth", sa.Double(), nullable=True),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["layer_id"], ["layers.layer_id"], name=op.f("fk_spaces_layer_id_layers")
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.source_id"], name=op.f("fk_spaces_source_id_sources")
        ),
        sa.ForeignKeyConstraint(
            ["word_model_id"],
            ["word_models.word_model_id"],
            name=op.f("fk_spaces_word_model_id_word_models"),
        ),
        sa.PrimaryKeyConstraint("space_id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("name", name=op.f("uq_spaces_name")),
    )
    op.create_table(
        "word_tokens",
        sa.Column(
            "word_model_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("wnid", sa.String(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=True),
        sa.Column("rule", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["wnid"], ["concepts.wnid"], name=op.f("fk_word_tokens_wnid_concepts")
        ),
        sa.ForeignKeyConstraint(
            ["word_model_id"],
            ["word_models.word_model_id"],
            name=op.f("fk_word_tokens_word_model_id_word_models"),
        ),
        sa.PrimaryKeyConstraint("word_model_id", "wnid", name=op.f("pk_word_tokens")),
    )
    op.create_table(
        "vector_files",
        sa.Column(
            "file_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("space_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("layer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("shard_index", sa.Integer(), nullable=True),
        sa.Column("n_rows", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["layer_id"], ["layers.layer_id"], name=op.f("fk_vector_files_layer_id_layers")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["extraction_runs.run_id"],
            name=op.f("fk_vector_files_run_id_extraction_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.space_id"], name=op.f("fk_vector_files_space_id_spaces")
        ),
        sa.PrimaryKeyConstraint("file_id", name=op.f("pk_vector_files")),
        sa.UniqueConstraint("path", name=op.f("uq_vector_files_path")),
    )
    op.create_index(op.f("ix_vector_files_layer_id"), "vector_files", ["layer_id"], unique=False)
    op.create_index(op.f("ix_vector_files_space_id"), "vector_files", ["space_id"], unique=False)
    op.execute(LAYER_CURVES)


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""
    tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
    return {t: int(conn.scalar(sa.text(f'SELECT count(*) FROM "{t}"'))) for t in sorted(tables)}


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS layer_curves")
    op.drop_index(op.f("ix_vector_files_space_id"), table_name="vector_files")
    op.drop_index(op.f("ix_vector_files_layer_id"), table_name="vector_files")
    op.drop_table("vector_files")
    op.drop_table("word_tokens")
    op.drop_table("spaces")
    op.drop_table("recovery_images")
    op.drop_table("predictions")
    op.drop_table("extraction_shards")
    op.drop_table("word_models")
    op.drop_index("ix_results_rsa_spaces", table_name="results_rsa")
    op.drop_index(op.f("ix_results_rsa_analysis_id"), table_name="results_rsa")
    op.drop_table("results_rsa")
    op.drop_index(op.f("ix_results_recovery_analysis_id"), table_name="results_recovery")
    op.drop_table("results_recovery")
    op.drop_index("ix_results_2v2_spaces", table_name="results_2v2")
    op.drop_index(op.f("ix_results_2v2_analysis_id"), table_name="results_2v2")
    op.drop_table("results_2v2")
    op.drop_table("layers")
    op.drop_index(op.f("ix_images_wnid"), table_name="images")
    op.drop_table("images")
    op.drop_table("extraction_runs")
    op.drop_table("vision_models")
    op.drop_table("sources")
    op.drop_table("permutation_nulls")
    op.drop_table("concepts")
    op.drop_index(op.f("ix_analysis_runs_params_sha256"), table_name="analysis_runs")
    op.drop_table("analysis_runs")
    if _has_sequences():
        for name in reversed(SEQUENCES):
            op.execute(sa.schema.DropSequence(sa.Sequence(name)))
