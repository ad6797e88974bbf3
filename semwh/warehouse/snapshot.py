"""User SQL over a registry on a server (PostgreSQL) or in SQLite: a read-only snapshot of its
tables in an in-memory DuckDB, where the one sandbox of :mod:`semwh.warehouse.sandbox` applies.

The user's statement never reaches the registry's server. The tables it names are read in one
read-only transaction (``REPEATABLE READ`` on PostgreSQL: every table of one snapshot, as of
one moment, whatever is being written meanwhile) and copied through Arrow into an in-memory
DuckDB whose tables and views are those of a DuckDB registry at the head revision, built once
per process by the migrations themselves. The statement then runs there under the same
statement check, file rules, locked settings and time limit as on a DuckDB registry, so
``pg_read_file``, ``lo_import``, ``COPY … TO PROGRAM``, ``SET ROLE`` or ``dblink`` are not
functions or statements the sandbox knows, whatever the connecting role may do on the server.

Only the tables a statement can read are copied: every registry table or view whose name
appears in its text (a word of it, comments and string constants included, so names inside
``query_table('…')`` count), with the tables behind the views it names; a statement that
calls ``query_table`` or ``query`` (whose table can be computed as it runs) gets every
table. The others exist, empty, so that every view and ``DESCRIBE`` still work. A copy larger than
:data:`LARGE_SNAPSHOT_ROWS` rows says so in one line on the ``semwh`` logger.
"""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pyarrow as pa
import sqlalchemy as sa

from semwh.config import ENV_SQL_TIMEOUT
from semwh.errors import ResourceError, WarehouseError
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import check_revision

#: A snapshot that copies more rows than this says so (one line, logger ``semwh``).
LARGE_SNAPSHOT_ROWS = 500_000
#: Rows fetched from the registry per batch while a table is copied.
FETCH_ROWS = 50_000
#: Tables every snapshot holds: the ``vectors`` view lists ``vector_files``, and the vectors
#: root recorded in ``warehouse_settings`` is checked against a ``--vectors`` override.
ALWAYS = frozenset({"vector_files", "warehouse_settings"})

log = logging.getLogger("semwh")
_WORD = re.compile(r"[a-z_][a-z0-9_]*")
#: Table functions that read a table named by a value computed as the statement runs
#: (``query_table('con' || 'cepts')``, ``query('FROM ' || …)``): a statement that calls one
#: gets every table, or it would read an empty one without a word.
_NAMED_AT_RUN_TIME = re.compile(r"\b(?:query_table|query)\s*\(")


@dataclass(frozen=True)
class RegistrySchema:
    """The tables (columns with their DuckDB types) and views of a registry at head."""

    tables: dict[str, tuple[tuple[str, str], ...]]
    views: dict[str, str]  # name -> CREATE VIEW statement
    revision: str

    @functools.cached_property
    def ddl(self) -> str:
        """The statements that create every table (without keys: a snapshot only reads) and
        every view (in an order where the views a view reads come first)."""
        tables = [
            f"CREATE TABLE {_quote(name)} ("
            + ", ".join(f"{_quote(column)} {kind}" for column, kind in columns)
            + ")"
            for name, columns in self.tables.items()
        ]
        return ";\n".join([*tables, *self.views.values()])

    def reads(self, statements: Iterable[str] | None) -> set[str]:
        """The tables ``statements`` can read (every table for None), views followed."""
        if statements is None:
            return set(self.tables)
        names = set(self.tables) | set(self.views)
        text = " ".join(statements).lower()
        if _NAMED_AT_RUN_TIME.search(text):
            return set(self.tables)
        found = set(_WORD.findall(text)) & names
        seen: set[str] = set()
        while found - seen:
            name = (found - seen).pop()
            seen.add(name)
            if name in self.views:
                found |= set(_WORD.findall(self.views[name].lower())) & names
        return {name for name in found if name in self.tables} | set(ALWAYS)


@functools.cache
def registry_schema() -> RegistrySchema:
    """The registry's tables and views at the head revision, as DuckDB declares them: the
    migrations run once per process on an empty DuckDB file (about a second)."""
    from semwh.warehouse.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="semwh-schema-") as folder:
        path = Path(folder) / "registry.duckdb"
        scratch = Warehouse(root=Path(folder), db_url=f"duckdb:///{path}")
        upgrade(scratch)
        scratch.dispose()
        conn = duckdb.connect(str(path), read_only=True)
        try:
            rows = conn.execute(
                "SELECT c.table_name, c.column_name, c.data_type FROM duckdb_columns() AS c "
                "JOIN duckdb_tables() AS t ON t.table_oid = c.table_oid "
                "WHERE NOT t.internal AND t.table_name <> 'alembic_version' "
                "ORDER BY c.table_name, c.column_index"
            ).fetchall()
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            views = conn.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal "
                "AND schema_name = 'main' ORDER BY view_oid"
            ).fetchall()
        finally:
            conn.close()
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        tables.setdefault(table, []).append((column, kind))
    unordered = RegistrySchema(
        tables={name: tuple(columns) for name, columns in tables.items()},
        views={},
        revision=revision[0] if revision else "",
    )
    return replace(unordered, views=_in_order(unordered.ddl, dict(views)))


def _in_order(tables_ddl: str, views: dict[str, str]) -> dict[str, str]:
    """``views`` in an order that creates each after the views it reads."""
    conn = duckdb.connect(":memory:")
    try:
        conn.execute(tables_ddl)
        ordered: dict[str, str] = {}
        pending = dict(views)
        while pending:
            created = False
            for name, sql in list(pending.items()):
                try:
                    conn.execute(sql)
                except duckdb.CatalogException:
                    continue  # a view it reads comes later
                ordered[name] = pending.pop(name)
                created = True
            if not created:
                raise WarehouseError(f"cannot recreate the registry views {', '.join(pending)}")
        return ordered
    finally:
        conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _begin_snapshot(connection: sa.Connection) -> None:
    """One read-only transaction that sees one moment of the registry."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")


@dataclass(frozen=True)
class SnapshotClock:
    """The time limit of the statement a snapshot is read for (``--timeout``): reading the
    registry's tables counts against it, so a copy of large tables stops there too."""

    timeout: float
    where: str
    start: float

    @classmethod
    def of(cls, timeout: float, where: str = "semwh sql") -> SnapshotClock:
        return cls(timeout=timeout, where=where, start=time.monotonic())

    def check(self, table: str) -> None:
        """Raises ResourceError once the limit is past (checked between batches)."""
        if self.timeout > 0 and time.monotonic() - self.start > self.timeout:
            raise ResourceError(
                f"{self.where}: reading the registry's tables for the statement ran past its "
                f"time limit of {self.timeout:g} s (at table {table}) and was stopped: give it "
                f"longer with --timeout SECONDS (or {ENV_SQL_TIMEOUT}; 0 for no limit), or "
                "name fewer or smaller tables"
            )


def _copy_table(
    conn: duckdb.DuckDBPyConnection,
    connection: sa.Connection,
    name: str,
    columns: Sequence[tuple[str, str]],
    copied: int,
    clock: SnapshotClock | None = None,
) -> int:
    """Copy ``name``'s rows (read in batches) into the DuckDB table of the same name; returns
    ``copied`` (the rows the snapshot holds so far) with them added."""
    table = sa.table(name, *(sa.column(column) for column, _ in columns))
    # JSON arrives as text, which DuckDB reads back as its JSON type.
    selected = [
        sa.cast(table.c[column], sa.Text).label(column) if kind == "JSON" else table.c[column]
        for column, kind in columns
    ]
    result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
        sa.select(*selected)
    )
    names = [column for column, _ in columns]
    for part in result.partitions():
        if clock is not None:
            clock.check(name)
        batch = pa.table({column: [row[i] for row in part] for i, column in enumerate(names)})
        conn.register("semwh_snapshot_rows", batch)
        conn.execute(f"INSERT INTO {_quote(name)} BY NAME SELECT * FROM semwh_snapshot_rows")
        conn.unregister("semwh_snapshot_rows")
        before, copied = copied, copied + batch.num_rows
        if before <= LARGE_SNAPSHOT_ROWS < copied:
            log.warning(
                "semwh sql: copying more than %s rows of the registry into the query's "
                "snapshot (now at table %s); name fewer or smaller tables to read less",
                f"{LARGE_SNAPSHOT_ROWS:,}",
                name,
            )
    return copied


def snapshot_connection(
    wh: Warehouse,
    statements: Iterable[str] | None = None,
    clock: SnapshotClock | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding the registry's tables and views, with the rows of the
    tables ``statements`` can read (every table for None) as of one moment.

    Raises:
        ResourceError: The copy ran past ``clock``'s time limit.
        SchemaMismatchError: The registry is not at the head revision.
        WarehouseError: The registry cannot be read.
    """
    schema = registry_schema()
    wanted = schema.reads(statements)
    conn = duckdb.connect(":memory:")
    try:
        conn.execute(schema.ddl)
        with wh.engine.connect() as connection:
            _begin_snapshot(connection)
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            if version.scalar() != schema.revision:
                check_revision(wh)  # raises, saying what to do
            copied = 0
            for name in sorted(wanted):
                copied = _copy_table(conn, connection, name, schema.tables[name], copied, clock)
            connection.rollback()
    except (sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
        # SQLite reports a missing table as an OperationalError, PostgreSQL as a
        # ProgrammingError.
        conn.close()
        check_revision(wh)  # no alembic_version: a registry without a schema
        raise WarehouseError(f"cannot read the registry for the query: {exc.orig}") from exc
    except sa.exc.DBAPIError as exc:
        conn.close()
        first = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        raise WarehouseError(f"cannot read the registry for the query: {first}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


__all__ = [
    "ALWAYS",
    "LARGE_SNAPSHOT_ROWS",
    "RegistrySchema",
    "SnapshotClock",
    "registry_schema",
    "snapshot_connection",
]
