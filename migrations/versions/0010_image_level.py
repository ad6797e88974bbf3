"""image level: spaces and results know their level; per-image layer scores

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00.000000

Every space has a concept level (its concept means) and, where it has per-image data, an
image level whose items are stimuli: the layers of vision models (their per-image vector
files) and the spaces ingested at the image level (vector files of kind ``images`` with the
space's id). The registry needs no column for it.

* ``results``: ``level`` (``concept`` | ``image``), ``n_items`` (the items compared:
  concepts, or stimuli at the image level; ``n_concepts`` stays the number of concepts they
  belong to), ``permute`` (how permutations relabelled the items: ``concepts``, ``images``
  or ``within-concept``) and ``resample`` (what a bootstrap resampled: ``concepts`` or
  ``images``). Every older result is a concept-level result: level ``concept``, ``n_items``
  its ``n_concepts``, concepts permuted and resampled.
* ``image_scores``: for each image of a layer, whether the nearest concept centroid (its
  own image left out of its concept's) is its own concept, the margin and its own concept's
  rank, keyed by ``space``, ``similarity`` and ``stimulus``.

The views over results (``results_rsa``, ``results_2v2``, ``results_measures``,
``sweep_curves``, ``layer_curves``, ``measure_curves``) gain ``level`` and ``n_items`` (the
curves also ``permute``, the scheme of their family) and keep the levels apart: a curve's
latest family is chosen per level.

The downgrade removes the image-level results (with their nulls, subject values, inference
rows and family memberships), the per-image scores and the image-level spaces that have no
concept level (RDMs of stimuli); ``semwh db downgrade`` counts them first.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Views over results, in the order they are dropped (views that read others first).
VIEWS = (
    "result_inference",
    "layer_curves",
    "sweep_curves",
    "measure_curves",
    "sweep_results",
    "results_rsa",
    "results_2v2",
    "results_measures",
)

RESULT_COLUMNS = (
    ("level", sa.String(), "VARCHAR"),
    ("n_items", sa.Integer(), "INTEGER"),
    ("permute", sa.String(), "VARCHAR"),
    ("resample", sa.String(), "VARCHAR"),
)

_LEVEL_COLUMNS = "level, n_items, permute, resample"


def _earlier(file: str) -> Any:
    """An earlier revision's module (its view definitions)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"semwh_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def _old_views() -> dict[str, str]:
    """The views of revision 0008 (unchanged through 0009), by name."""
    r8 = _earlier("0008_one_results_table.py")
    return {
        "results_rsa": r8.RESULTS_RSA,
        "results_2v2": r8.RESULTS_2V2,
        "results_measures": r8.RESULTS_MEASURES,
        **r8._views(),
    }


def new_views() -> dict[str, str]:
    """The views of this revision, by name, in the order they are created."""
    old = _old_views()
    legacy = {
        name: _replace(old[name], "\nFROM results\n", f", {_LEVEL_COLUMNS}\nFROM results\n")
        for name in ("results_rsa", "results_2v2", "results_measures")
    }
    sweep = old["sweep_curves"]
    for before, after in (
        (
            "SELECT sr.sweep_id, sr.space_a, sr.space_b, sr.sweep_status,",
            "SELECT sr.sweep_id, sr.space_a, sr.space_b, sr.sweep_status,\n"
            "        coalesce(t.level, r.level, 'concept') AS level,\n"
            "        coalesce(t.n_items, r.n_items, t.n_concepts, r.n_concepts) AS n_items,\n"
            "        coalesce(t.permute, r.permute, 'concepts') AS permute,",
        ),
        (
            "SELECT sweep_id, space_a, space_b, bool_and(is_current) AS is_current,",
            "SELECT sweep_id, space_a, space_b, level, max(n_items) AS n_items,\n"
            "        max(permute) AS permute,\n"
            "        bool_and(is_current) AS is_current,",
        ),
        ("GROUP BY sweep_id, space_a, space_b\n", "GROUP BY sweep_id, space_a, space_b, level\n"),
        ("PARTITION BY p.space_a, p.space_b,\n", "PARTITION BY p.space_a, p.space_b, p.level,\n"),
        (
            "    r.ceiling_upper AS ceiling_upper_rsa\nFROM ranked AS p",
            "    r.ceiling_upper AS ceiling_upper_rsa,\n    p.level,\n    p.n_items,\n"
            "    p.permute\n"
            "FROM ranked AS p",
        ),
        (
            "WHERE x.space_a = p.space_a AND x.space_b = p.space_b)",
            "WHERE x.space_a = p.space_a AND x.space_b = p.space_b\n"
            "        AND coalesce(x.level, 'concept') = p.level)",
        ),
        (
            "WHERE y.space_a = p.space_a AND y.space_b = p.space_b)",
            "WHERE y.space_a = p.space_a AND y.space_b = p.space_b\n"
            "        AND coalesce(y.level, 'concept') = p.level)",
        ),
    ):
        sweep = _replace(sweep, before, after)
    layer = _replace(
        old["layer_curves"],
        "ceiling_lower_rsa, ceiling_upper_rsa\nFROM sweep_curves",
        "ceiling_lower_rsa, ceiling_upper_rsa, level, n_items, permute\nFROM sweep_curves",
    )
    measure = old["measure_curves"]
    for before, after in (
        (
            "n_subjects, ceiling_lower, ceiling_upper\n    FROM results\n",
            "n_subjects, ceiling_lower, ceiling_upper,\n"
            "        coalesce(level, 'concept') AS level,\n"
            "        coalesce(n_items, n_concepts) AS n_items,\n"
            "        coalesce(permute, 'concepts') AS permute\n    FROM results\n",
        ),
        (
            "PARTITION BY space_a, space_b, measure, variant,\n",
            "PARTITION BY space_a, space_b, measure, variant, level,\n",
        ),
        (
            "    ceiling_upper\nFROM ranked",
            "    ceiling_upper,\n    level,\n    n_items,\n    permute\nFROM ranked",
        ),
    ):
        measure = _replace(measure, before, after)
    return {
        **legacy,
        "sweep_results": old["sweep_results"],
        "sweep_curves": sweep,
        "layer_curves": layer,
        "measure_curves": measure,
        "result_inference": old["result_inference"],
    }


def _add_column(table: str, name: str, kind: sa.types.TypeEngine, sql_type: str) -> None:
    if op.get_bind().dialect.name == "duckdb":
        op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {sql_type}")
    else:
        op.add_column(table, sa.Column(name, kind, nullable=True))


def _drop_views() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")


def upgrade() -> None:
    _drop_views()
    for name, kind, sql_type in RESULT_COLUMNS:
        _add_column("results", name, kind, sql_type)
    op.execute(
        "UPDATE results SET level = 'concept', n_items = n_concepts, permute = 'concepts', "
        "resample = 'concepts'"
    )
    op.create_table(
        "image_scores",
        sa.Column("space", sa.String(), nullable=False),
        sa.Column("similarity", sa.String(), nullable=False),
        sa.Column("stimulus", sa.String(), nullable=False),
        sa.Column("image_id", ID, nullable=False),
        sa.Column("concept", sa.String(), nullable=False),
        sa.Column("space_sha256", sa.String(), nullable=True),
        sa.Column("n_concepts", sa.Integer(), nullable=False),
        sa.Column("n_images", sa.Integer(), nullable=False),
        sa.Column("nearest_concept", sa.String(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("margin", sa.Double(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("own_similarity", sa.Double(), nullable=False),
        sa.Column("analysis_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("space", "similarity", "stimulus", name=op.f("pk_image_scores")),
    )
    op.create_index(op.f("ix_image_scores_stimulus"), "image_scores", ["stimulus"], unique=False)
    r8 = _earlier("0008_one_results_table.py")
    for view in new_views().values():
        op.execute(r8.in_dialect(view))


#: Rows the downgrade removes: image-level results and what hangs on them.
_IMAGE_RESULTS = "SELECT result_id FROM results WHERE level = 'image'"
#: RDMs between stimuli: an RDM space with no concept file (its per-image file may already
#: be unregistered by :func:`before_downgrade`).
_IMAGE_RDMS = (
    "SELECT s.space_id FROM spaces AS s WHERE s.kind = 'rdm' AND NOT EXISTS (SELECT 1 FROM "
    "vector_files AS f WHERE f.space_id = s.space_id AND f.kind = 'concepts')"
)
_DEPENDENTS = (
    ("permutation_nulls", "test <> 'diff'"),
    ("subject_results", "test <> 'diff'"),
    ("subject_inference", "test <> 'diff'"),
    ("sweep_members", "test NOT IN ('recovery', 'diff')"),
)


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """What the downgrade removes, counted before it runs (``semwh db downgrade`` lists them
    and asks for ``--yes``)."""

    def count(sql: str) -> int:
        return int(conn.execute(sa.text(sql)).scalar() or 0)

    return {
        "results: image-level results": count("SELECT count(*) FROM results WHERE level = 'image'"),
        "image_scores: per-image layer scores": count("SELECT count(*) FROM image_scores"),
        "spaces: image-level RDMs (no concept level)": count(
            f"SELECT count(*) FROM spaces WHERE space_id IN ({_IMAGE_RDMS})"
        ),
        "noise_ceilings: of image-level RDMs": count(
            "SELECT count(*) FROM noise_ceilings WHERE space IN "
            f"(SELECT name FROM spaces WHERE space_id IN ({_IMAGE_RDMS}))"
        ),
        "vector_files: per-image files of ingested spaces": count(
            "SELECT count(*) FROM vector_files WHERE kind = 'images' AND layer_id IS NULL"
        ),
    }


def before_downgrade(conn: sa.Connection) -> None:
    """Unregister the files of the image-level RDMs in a transaction of their own, so that
    the downgrade can delete their space rows (DuckDB refuses to delete a row whose
    referencing rows were deleted in the same transaction); ``semwh db downgrade`` runs it
    first."""
    conn.execute(sa.text(f"DELETE FROM vector_files WHERE space_id IN ({_IMAGE_RDMS})"))


def downgrade() -> None:
    _drop_views()
    for table, where in _DEPENDENTS:
        op.execute(f"DELETE FROM {table} WHERE {where} AND result_id IN ({_IMAGE_RESULTS})")
    op.execute("DELETE FROM results WHERE level = 'image'")
    rdms = [r[0] for r in op.get_bind().execute(sa.text(_IMAGE_RDMS))]
    for space_id in rdms:
        op.execute(f"DELETE FROM vector_files WHERE space_id = {int(space_id)}")
        op.execute(
            "DELETE FROM noise_ceilings WHERE space IN "
            f"(SELECT name FROM spaces WHERE space_id = {int(space_id)})"
        )
        op.execute(f"DELETE FROM spaces WHERE space_id = {int(space_id)}")
    op.execute("DELETE FROM vector_files WHERE kind = 'images' AND layer_id IS NULL")
    op.drop_index(op.f("ix_image_scores_stimulus"), table_name="image_scores")
    op.drop_table("image_scores")
    # DuckDB drops a column only from a table without indexes.
    op.drop_index("ix_results_measure_spaces", table_name="results")
    op.drop_index(op.f("ix_results_analysis_id"), table_name="results")
    for name, _, _ in reversed(RESULT_COLUMNS):
        op.drop_column("results", name)
    op.create_index(op.f("ix_results_analysis_id"), "results", ["analysis_id"], unique=False)
    op.create_index(
        "ix_results_measure_spaces", "results", ["measure", "space_a", "space_b"], unique=False
    )
    r8 = _earlier("0008_one_results_table.py")
    for view in reversed(VIEWS):
        op.execute(r8.in_dialect(_old_views()[view]))
