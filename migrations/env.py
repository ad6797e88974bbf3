"""Alembic environment for the semwh registry."""

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

# Registers Alembic's DuckDB implementation and semwh's PostgreSQL one.
from semwh.warehouse.migrate import migration_lock, restore_views
from semwh.warehouse.models import Base
from semwh.warehouse.views import VIEW_NAMES  # noqa: E402


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    # Views are created by raw SQL in revisions; they are not tables to compare.
    return not (type_ == "table" and name in VIEW_NAMES)


def _after_revision(ctx, **_):  # noqa: ANN001, ANN003
    if ctx.connection.dialect.name == "postgresql":
        restore_views(ctx.connection)


def run_migrations_online() -> None:
    config = context.config
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object,
            compare_type=True,
            on_version_apply=_after_revision,
        )
        with context.begin_transaction():
            # One process at a time changes a PostgreSQL registry's schema.
            migration_lock(connection)
            context.run_migrations()


run_migrations_online()
