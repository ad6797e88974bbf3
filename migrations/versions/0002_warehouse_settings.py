"""warehouse settings (the vectors root)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 16:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "warehouse_settings",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_warehouse_settings")),
    )


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Rows the downgrade removes, by table, counted before it runs (``semwh db downgrade``
    lists them and asks for ``--yes``)."""
    return {
        "warehouse_settings": int(conn.scalar(sa.text("SELECT count(*) FROM warehouse_settings")))
    }


def downgrade() -> None:
    # A warehouse whose vectors live elsewhere than <warehouse>/vectors forgets where: the
    # downgraded code only knows that default.
    op.drop_table("warehouse_settings")
