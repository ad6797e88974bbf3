"""layers record the layout of the output their pooling reduced

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:40:00.000000

``layers.layout`` says which axes of a probed output were batch, space, tokens and channels
(``channels_first``, ``channels_last``, ``tokens[:P]``, ``sequence_first[:P]``, ``vector``,
``flat``; see ``semwh.extract.layouts``). Rows stored before it were pooled by rank alone, and
the upgrade records exactly that: 4-D outputs (three stored axes) ``channels_first``, 3-D
outputs ``tokens`` (every token averaged), 2-D outputs ``vector``, anything else ``flat``.
Their stored values are unchanged.

DuckDB cannot drop a column of a table that other tables reference (``spaces`` and
``vector_files`` reference ``layers``), and SQLite rebuilds the table to drop one, which its
check of the DuckDB-only views refuses; on both the downgrade leaves the column in place:
revision 0004 code never reads it, and upgrading again fills only the rows it left empty.
Other databases drop it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BY_RANK = """
UPDATE layers SET layout = CASE json_array_length({shape})
    WHEN 3 THEN 'channels_first'
    WHEN 2 THEN 'tokens'
    WHEN 1 THEN 'vector'
    ELSE 'flat'
END
WHERE layout IS NULL
"""


def _dialect() -> str:
    return str(op.get_bind().dialect.name)


def upgrade() -> None:
    if _dialect() == "duckdb":
        op.execute("ALTER TABLE layers ADD COLUMN IF NOT EXISTS layout VARCHAR")
    elif "layout" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("layers")}:
        op.add_column("layers", sa.Column("layout", sa.String(), nullable=True))
    # The shape is JSON text; PostgreSQL reads it as JSON only when told.
    shape = "output_shape::json" if _dialect() == "postgresql" else "output_shape"
    op.execute(_BY_RANK.format(shape=shape))


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""
    if conn.dialect.name in ("duckdb", "sqlite"):
        return {}  # the column stays (see downgrade)
    return {
        "layers.layout": int(
            conn.scalar(sa.text("SELECT count(*) FROM layers WHERE layout IS NOT NULL"))
        )
    }


def downgrade() -> None:
    if _dialect() in ("duckdb", "sqlite"):
        return
    op.drop_column("layers", "layout")
