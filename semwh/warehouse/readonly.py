"""Read-only SQL over a warehouse: registry tables, results, and the ``vectors`` view."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from semwh.errors import MissingDependencyError, WarehouseBusyError, WarehouseError
from semwh.warehouse.layout import Warehouse, busy_message, is_busy_error
from semwh.warehouse.sandbox import (
    allowed_folders,
    check_read_statement,
    check_vectors_override,
    lock_down,
    sql_error,
)
from semwh.warehouse.views import create_vectors_view

# How long a read waits for a writer's short transaction before saying "warehouse busy".
READ_BUSY_SECONDS = 5.0


@dataclass(frozen=True)
class QueryResult:
    """Rows of a read-only query as an Arrow table, with the SQL that produced them."""

    table: pa.Table
    sql: str

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def rows(self) -> list[tuple[Any, ...]]:
        cols = [self.table.column(i).to_pylist() for i in range(self.table.num_columns)]
        return list(zip(*cols, strict=True)) if cols else []

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def __len__(self) -> int:
        return self.table.num_rows

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow stream protocol: ``pyarrow.table(r)``, ``polars.DataFrame(r)`` accept it."""
        return self.table.__arrow_c_stream__(requested_schema)

    def df(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        _require("pandas", "df()")
        return self.table.to_pandas()

    def pl(self) -> Any:
        """The rows as a polars DataFrame (needs polars)."""
        _require("polars", "pl()")
        import polars

        return polars.from_arrow(self.table)


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"QueryResult.{what} needs {module}: pip install {module} "
            "(or 'semwh[notebook]'); .table is the Arrow table without it"
        )


def arrow_table(rel: duckdb.DuckDBPyRelation) -> pa.Table:
    """A relation's rows as an Arrow table (the method's name changed in DuckDB 2)."""
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


def query_arrow(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> pa.Table:
    """Run ``sql`` with bound parameters; an empty table for statements without rows."""
    rel = conn.sql(sql, params=params or None)
    return arrow_table(rel) if rel is not None else pa.table({})


def _connect_read_only(path: Path, wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """Open the registry read-only, retrying while a writer briefly holds the file.

    DuckDB lets one process hold a file for writing; semwh's writers open it only for short
    transactions, so a reader that meets the lock tries again with backoff for up to ``wait``
    seconds (``READ_BUSY_SECONDS``) before it reports "warehouse busy".
    """
    deadline = time.monotonic() + (READ_BUSY_SECONDS if wait is None else wait)
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            if not is_busy_error(exc):
                raise WarehouseError(f"cannot open {path}: {exc}") from exc
            if time.monotonic() + delay > deadline:
                raise WarehouseBusyError(busy_message(path, exc)) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


@contextmanager
def read_connection(wh: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection on the registry with the ``vectors`` view in place."""
    path = wh.duckdb_path
    if path is None:
        raise WarehouseError(
            f"read-only SQL needs a DuckDB registry; {wh.db_url.split(':', 1)[0]} registries "
            "are queried with their own client"
        )
    if not path.exists():
        raise WarehouseError(f"no registry at {path}: run `semwh init` first")
    conn = _connect_read_only(path)
    try:
        create_vectors_view(conn, wh.vectors)
        yield conn
    finally:
        conn.close()


@contextmanager
def sandbox_connection(
    wh: Warehouse, allow_read: Sequence[str | os.PathLike[str]] = ()
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read connection locked down for user SQL (see :mod:`semwh.warehouse.sandbox`).

    Files can be read only under the vectors root and the ``allow_read`` folders; the
    settings are locked, so no statement can widen that. A vectors folder given for this
    process must be where it reaches the recorded root (:func:`check_vectors_override`).

    Raises:
        SandboxError: An ``allow_read`` folder does not exist, or the vectors folder given
            is not the warehouse's.
    """
    folders = allowed_folders(wh, allow_read)
    with read_connection(wh) as conn:
        check_vectors_override(wh, conn)
        lock_down(conn, folders)
        yield conn


def run_sandboxed(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    where: str = "semwh sql",
) -> pa.Table:
    """Check that ``sql`` is one read statement, then run it on a sandbox connection.

    Raises:
        SandboxError: Several statements, or a file outside the allowed folders.
        ReadOnlyError: The statement is not a read.
        WarehouseError: The statement is invalid.
    """
    check_read_statement(conn, sql, where=where)
    try:
        return query_arrow(conn, sql, params)
    except duckdb.Error as exc:
        raise sql_error(exc, where) from exc


def run_sql(
    wh: Warehouse,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    allow_read: Sequence[str | os.PathLike[str]] = (),
) -> QueryResult:
    """Run one read statement in the sandbox and return its rows.

    Args:
        wh: The warehouse.
        sql: Exactly one SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN statement.
        params: Bound ``$name`` parameters.
        allow_read: Folders whose files the statement may read besides the vectors root.

    Raises:
        SandboxError: Several statements, or a file outside the allowed folders.
        ReadOnlyError: The statement is not a read.
        WarehouseError: The statement is invalid.
    """
    with sandbox_connection(wh, allow_read) as conn:
        table = run_sandboxed(conn, sql, params)
    return QueryResult(table=table, sql=sql)
