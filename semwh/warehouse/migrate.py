"""Alembic, driven from Python: init, upgrade, downgrade, current, history, revision check."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.ddl.impl import DefaultImpl
from alembic.ddl.postgresql import PostgresqlImpl
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, schema, text

from semwh.config import REGISTRY_FILENAME, load_settings
from semwh.errors import ConfigError, SchemaMismatchError, WarehouseError
from semwh.warehouse.layout import (
    VECTORS_SETTING,
    Warehouse,
    peek_registry,
    record_vectors_location,
    stored_vectors_location,
    warehouse_from_settings,
)


class DuckDBImpl(DefaultImpl):
    """Alembic ships no DuckDB implementation; registering the dialect name is enough."""

    __dialect__ = "duckdb"
    transactional_ddl = True


#: A revision's statement that drops a view (a view or a table that other views may read).
_DROP_VIEW = re.compile(r"^\s*DROP\s+VIEW\s+IF\s+EXISTS\s+(\w+)\s*;?\s*$", re.I)
#: Views set aside by the current revision, by connection: (name, definition), readers last.
_SET_ASIDE = "semwh_views_set_aside"

_DEPENDENT_VIEWS = text(
    """
    WITH RECURSIVE dependents(oid, depth) AS (
        SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass(:name)
          AND r.ev_class <> d.refobjid
        UNION
        SELECT r.ev_class, dependents.depth + 1
        FROM dependents JOIN pg_depend d ON d.refobjid = dependents.oid
        JOIN pg_rewrite r ON r.oid = d.objid
        WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.refobjid
    )
    SELECT c.relname, pg_get_viewdef(c.oid)
    FROM dependents JOIN pg_class c ON c.oid = dependents.oid
    GROUP BY c.oid, c.relname ORDER BY max(dependents.depth), c.relname
    """
)


class PostgresImpl(PostgresqlImpl):
    """Alembic's PostgreSQL implementation, with DuckDB's view semantics for the revisions.

    DuckDB binds a view to the names it reads when the view is queried, so the revisions
    drop and recreate a view while other views read it, or drop a table a view reads.
    PostgreSQL binds views when they are created and refuses those drops. Here the views
    that read what is dropped are dropped first and their definitions kept; those the
    revision did not recreate itself are recreated when it ends (:func:`restore_views`).
    """

    __dialect__ = "postgresql"

    def _exec(self, construct, *args, **kw):  # type: ignore[no-untyped-def]
        name = None
        if isinstance(construct, str) and (match := _DROP_VIEW.match(construct)):
            name = match.group(1)
        elif isinstance(construct, schema.DropTable):
            name = construct.element.name
        if name is not None and not self.as_sql and self.connection is not None:
            _set_aside_readers(self.connection, name)
        return super()._exec(construct, *args, **kw)


def _set_aside_readers(conn: Connection, name: str) -> None:
    """Drop the views that read ``name`` (readers of readers first), keeping their SQL."""
    views = conn.execute(_DEPENDENT_VIEWS, {"name": name}).all()
    kept = conn.info.setdefault(_SET_ASIDE, [])
    known = {view for view, _ in kept}
    kept.extend((view, definition) for view, definition in views if view not in known)
    for view, _ in reversed(views):
        conn.execute(text(f'DROP VIEW IF EXISTS "{view}"'))


#: The advisory lock held while the schema changes on PostgreSQL ("semwhmig" in ASCII).
MIGRATION_LOCK = 0x73656D77686D6967


def migration_lock(connection: Connection) -> None:
    """Let one process at a time change a PostgreSQL registry's schema.

    Two `semwh init` (or `db upgrade`) at once would both create ``alembic_version`` and the
    tables; the second would fail half-way with the server's error. The lock is held until
    the migration's transaction ends; a process that must wait says so on the ``semwh``
    logger, then finds the schema the other one made.
    """
    if connection.dialect.name != "postgresql":
        return
    got = connection.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    if not got.scalar():
        logging.getLogger("semwh").warning(
            "another process is changing the registry's schema; waiting for it to finish"
        )
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})


def restore_views(conn: Connection) -> None:
    """Recreate the views a PostgreSQL revision dropped along with what they read."""
    kept = conn.info.pop(_SET_ASIDE, [])
    for view, definition in kept:
        if conn.execute(text("SELECT to_regclass(:v)"), {"v": view}).scalar() is None:
            conn.execute(text(f'CREATE VIEW "{view}" AS {definition}'))


def migrations_dir() -> Path:
    """The Alembic script folder, inside the installed package or the source tree."""
    return Path(str(files("semwh.migrations")))


def alembic_config(wh: Warehouse, stdout: io.StringIO | None = None) -> Config:
    cfg = Config(stdout=stdout or io.StringIO())
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", wh.db_url.replace("%", "%%"))
    cfg.attributes["engine"] = wh.engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(_script_only_config())
    head = script.get_current_head()
    assert head is not None
    return head


def _script_only_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def current_revision(wh: Warehouse) -> str | None:
    """The registry's schema revision, or None when it has no schema."""
    with peek_registry(wh) as con:
        if con is not None:
            found = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'alembic_version' "
                "AND schema_name = 'main'"
            ).fetchone()
            if not found or not found[0]:
                return None
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            return row[0] if row else None
    with wh.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def known_revisions() -> set[str]:
    """Every revision id in the migration scripts this semwh ships."""
    script = ScriptDirectory.from_config(_script_only_config())
    return {rev.revision for rev in script.walk_revisions()}


def _too_new(wh: Warehouse, current: str, head: str) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"warehouse {wh.root} schema is at revision {current}, which this semwh does not know "
        f"(it expects {head}): the warehouse was written by a newer semwh; upgrade semwh "
        "or run `semwh db downgrade` with that newer version"
    )


def check_revision(wh: Warehouse) -> None:
    """Raise unless the warehouse schema is exactly at the code's head revision."""
    current = current_revision(wh)
    head = head_revision()
    if current == head:
        return
    if current is None and wh.registry_file is None:
        raise SchemaMismatchError(
            f"registry {wh.shown_url} has no semwh schema (revision none), semwh expects "
            f"{head}: run `semwh --db URL init` once for the lab (or check --db / SEMWH_DB)"
        )
    if current is None:
        raise SchemaMismatchError(
            f"warehouse {wh.root} has no schema (revision none), semwh expects {head}: "
            f"run `semwh --warehouse {wh.root} init` or `semwh --warehouse {wh.root} db upgrade`"
        )
    if current not in known_revisions():
        raise _too_new(wh, current, head)
    raise SchemaMismatchError(
        f"warehouse {wh.root} schema is at revision {current}, semwh expects {head}: "
        f"run `semwh --warehouse {wh.root} db upgrade`"
    )


def open_warehouse(
    warehouse: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    *,
    check_schema: bool = True,
    vectors: str | None = None,
) -> Warehouse:
    """Open an existing warehouse and check that its schema matches this code.

    Args:
        warehouse: The folder (default: ``SEMWH_WAREHOUSE`` or ``./semwh-warehouse``).
        db_url: A SQLAlchemy URL for the registry instead of the folder's DuckDB file.
        check_schema: Raise when the schema revision differs from the code's head.
        vectors: Where this process reaches the vectors root, instead of the registry's record.

    Raises:
        WarehouseError: The warehouse does not exist.
        SchemaMismatchError: The schema is older or newer than the code.
    """
    wh = warehouse_from_settings(load_settings(warehouse, db_url, vectors))
    if not wh.exists():
        missing = wh.registry_file
        detail = (
            f" (its registry file {missing} does not exist)"
            if missing is not None and missing != wh.root / REGISTRY_FILENAME
            else ""
        )
        raise WarehouseError(
            f"no warehouse at {wh.root}{detail}: run `semwh --warehouse {wh.root} init` first"
        )
    if check_schema:
        check_revision(wh)
    return wh


@contextmanager
def _migrating(wh: Warehouse) -> Iterator[None]:
    """Refuse to migrate from a revision this code does not know; name Alembic's failures."""
    if wh.exists():
        current = current_revision(wh)
        if current is not None and current not in known_revisions():
            raise _too_new(wh, current, head_revision())
    try:
        yield
    except CommandError as exc:
        raise WarehouseError(f"cannot migrate warehouse {wh.root}: {exc}") from exc


def upgrade(wh: Warehouse, revision: str = "head") -> str | None:
    wh.root.mkdir(parents=True, exist_ok=True)
    with _migrating(wh):
        command.upgrade(alembic_config(wh), revision)
    return current_revision(wh)


def _check_target(revision: str) -> None:
    known = known_revisions()
    if revision not in known and revision != "base" and not revision.startswith("-"):
        choices = ", ".join(sorted(known))
        raise WarehouseError(
            f"unknown revision {revision!r} (choose base, -1, or one of: {choices})"
        )


def _undone(current: str | None, revision: str) -> list[str]:
    """The revisions a downgrade from ``current`` to ``revision`` undoes, newest first."""
    chain = [rev for rev, _, _ in history()]
    if current not in chain:
        return []
    top = chain.index(current)
    if revision == "base":
        bottom = -1
    elif revision.startswith("-"):
        try:
            bottom = top - int(revision[1:])
        except ValueError:
            return []
    elif revision in chain:
        bottom = chain.index(revision)
    else:
        return []
    return [chain[i] for i in range(top, max(bottom, -1), -1)]


def downgrade_drops(wh: Warehouse, revision: str) -> dict[str, int]:
    """What a downgrade to ``revision`` would remove: rows by table (only those with rows).

    Each revision says what its downgrade drops (its module's ``downgrade_drops``); the rows
    are counted before anything runs. A table that several steps touch counts the most any
    step removes (the whole table when one of them drops it).

    Raises:
        WarehouseError: An unknown revision, or a revision that does not say what its
            downgrade drops.
    """
    _check_target(revision)
    undone = _undone(current_revision(wh), revision)
    if not undone:
        return {}
    script = ScriptDirectory.from_config(_script_only_config())
    drops: dict[str, int] = {}
    with wh.engine.connect() as conn:
        for rev in undone:
            count = getattr(script.get_revision(rev).module, "downgrade_drops", None)
            if count is None:
                raise WarehouseError(
                    f"revision {rev} does not say what its downgrade drops; "
                    "export the tables first (`semwh export`) and downgrade with Alembic"
                )
            for table, rows in count(conn).items():
                drops[table] = max(drops.get(table, 0), int(rows))
    return {table: rows for table, rows in drops.items() if rows}


def describe_drops(drops: dict[str, int]) -> str:
    """``table: rows`` entries in one line."""
    return ", ".join(f"{table}: {rows} rows" for table, rows in sorted(drops.items()))


def confirm_downgrade(wh: Warehouse, revision: str, *, confirmed: bool) -> dict[str, int]:
    """Refuse a downgrade that would remove rows (or go to ``base``) without confirmation.

    Returns:
        What the downgrade removes, by table (see :func:`downgrade_drops`).

    Raises:
        ConfigError: ``revision`` is base, or the downgrade removes rows, and ``confirmed``
            is false; the message lists every table with its row count.
        WarehouseError: An unknown revision.
    """
    drops = downgrade_drops(wh, revision)
    if confirmed:
        return drops
    if drops:
        raise ConfigError(
            f"`semwh db downgrade {revision}` removes {describe_drops(drops)}: pass --yes to "
            "confirm (or export the tables first with `semwh export`)"
        )
    if revision == "base":
        raise ConfigError(
            f"`semwh db downgrade base` drops every table of {wh.shown_url} and all its rows: "
            "pass --yes to confirm (or export the tables first with `semwh export`)"
        )
    return drops


def downgrade(wh: Warehouse, revision: str) -> str | None:
    """Downgrade the schema to ``revision`` (no confirmation: see :func:`confirm_downgrade`).

    A revision whose downgrade deletes rows that other rows reference has a
    ``before_downgrade(conn)`` that deletes the referencing rows first, in a transaction of
    its own: DuckDB cannot delete a row whose referencing rows were deleted in the same
    transaction, and the migrations run in one.
    """
    _check_target(revision)
    undone = _undone(current_revision(wh), revision)
    script = ScriptDirectory.from_config(_script_only_config())
    for rev in undone:
        before = getattr(script.get_revision(rev).module, "before_downgrade", None)
        if before is not None:
            with wh.engine.begin() as conn:
                before(conn)
    with _migrating(wh):
        command.downgrade(alembic_config(wh), revision)
    return current_revision(wh)


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down_revision, message) from oldest to newest."""
    script = ScriptDirectory.from_config(_script_only_config())
    revs = list(script.walk_revisions())
    revs.reverse()
    return [(r.revision, r.down_revision, (r.doc or "").strip()) for r in revs]  # type: ignore[misc]


def init_warehouse(wh: Warehouse) -> tuple[str | None, str]:
    """Create the folder, migrate to head and record the vectors root if one is given.

    A no-op on an up-to-date warehouse. ``wh.vectors_location`` (``--vectors``) is recorded
    in the registry so that every process reading the warehouse finds the files.

    Raises:
        WarehouseError: The vectors root cannot be reached, or the warehouse already holds
            vector files under another root.

    Returns:
        The revision before and after.
    """
    before = current_revision(wh) if wh.exists() else None
    if before is None:
        _refuse_nested(wh)
    if before is None and wh.exists():
        _refuse_foreign(wh)
    head = head_revision()
    # Before anything is created: an unreachable store or a bad location changes nothing.
    wh.vectors.ensure()
    if before != head:
        upgrade(wh, "head")
    record_vectors_location(wh)
    if wh.registry_file is None:
        if stored_vectors_location(wh) is None:
            # A registry on a server is read from other folders and machines: record where
            # the vectors are, or each reader would look in its own ./semwh-warehouse/vectors.
            from semwh.warehouse.models import WarehouseSetting

            with wh.session() as session:
                session.merge(WarehouseSetting(key=VECTORS_SETTING, value=wh.vectors.location))
        # What the registry records now (another process's init may have recorded it first).
        wh._vectors = None
    return before, head


def _refuse_nested(wh: Warehouse) -> None:
    """Refuse a new warehouse inside another one's folder: its files would sit among the
    other warehouse's (and its user outputs, refused inside a warehouse, would be too)."""
    for parent in wh.root.parents:
        if (parent / REGISTRY_FILENAME).is_file():
            raise WarehouseError(
                f"{wh.root} is inside the warehouse {parent}: create the new warehouse in a "
                "folder outside it"
            )


def _refuse_foreign(wh: Warehouse) -> None:
    """Refuse a registry that holds tables but no semwh revision: another program's database.

    Migrating it would fail half-way on a table of the same name (``concepts``) or mix semwh's
    tables into someone else's file; it is left exactly as it is.
    """
    with peek_registry(wh) as con:
        if con is not None:
            rows = con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1"
            ).fetchall()
            tables = [r[0] for r in rows]
        else:
            from sqlalchemy import inspect

            tables = sorted(inspect(wh.engine).get_table_names())
    tables = [t for t in tables if t != "alembic_version"]
    if tables:
        shown = ", ".join(tables[:6]) + (f" and {len(tables) - 6} more" if len(tables) > 6 else "")
        raise WarehouseError(
            f"registry {wh.duckdb_path or wh.shown_url} holds tables of another program ({shown}) "
            "and no semwh schema; it was left untouched: choose an empty folder for "
            "`semwh init` (or another registry with --db / SEMWH_DB)"
        )
