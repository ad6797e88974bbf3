"""Read-only SQL over a warehouse: registry tables, results, and the ``vectors`` view."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from semwh.config import ENV_SQL_TIMEOUT, sql_timeout
from semwh.errors import (
    MissingDependencyError,
    ResourceError,
    WarehouseBusyError,
    WarehouseError,
)
from semwh.warehouse.layout import Warehouse, busy_message, is_busy_error
from semwh.warehouse.sandbox import (
    allowed_folders,
    check_read_statement,
    check_vectors_override,
    lock_down,
    sql_error,
)
from semwh.warehouse.storage import pid_alive
from semwh.warehouse.views import create_vectors_view

# How long a read waits for a writer's short transaction before saying "warehouse busy".
READ_BUSY_SECONDS = 5.0
# Rows per record batch streamed from DuckDB to an output.
STREAM_BATCH_ROWS = 65_536
# Folders of DuckDB's spill files for user SQL: SPILL_PREFIX.<host>.<pid>.<token>.
SPILL_PREFIX = "sql-spill"
# How long a stopped statement may take to give its thread back.
_STOP_WAIT_SECONDS = 5.0

T = TypeVar("T")


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
def read_connection(
    wh: Warehouse, statements: Iterable[str] | None = None, timeout: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB connection on the registry with the ``vectors`` view in place.

    A DuckDB registry is opened read-only. Any other (PostgreSQL, SQLite) is read into an
    in-memory DuckDB instead (:mod:`semwh.warehouse.snapshot`): the tables ``statements``
    can read (every table for None), as of one moment; user SQL never reaches the server.
    That copy stops at ``timeout`` seconds (None: none; 0: no limit).
    """
    path = wh.duckdb_path
    if path is None:
        from semwh.warehouse.snapshot import SnapshotClock, snapshot_connection

        clock = SnapshotClock.of(timeout) if timeout is not None else None
        conn = snapshot_connection(wh, statements, clock)
    elif not path.exists():
        raise WarehouseError(f"no registry at {path}: run `semwh init` first")
    else:
        conn = _connect_read_only(path)
    try:
        create_vectors_view(conn, wh.vectors)
        yield conn
    finally:
        try:
            conn.close()
        except duckdb.Error:
            pass  # a statement still stopping: the process's exit ends it


def _spill_parents(wh: Warehouse) -> list[Path]:
    """Where spill folders go: the warehouse's tmp/, or the system's temporary folder when
    that cannot be written (an archived, read-only warehouse)."""
    return [wh.tmp_root, Path(tempfile.gettempdir())]


def clean_spill(wh: Warehouse) -> int:
    """Remove spill folders of user SQL left by killed processes of this host; returns how
    many. Folders of live processes and of other hosts are left alone."""
    host = socket.gethostname()
    removed = 0
    for parent in _spill_parents(wh):
        for path in parent.glob(f"{SPILL_PREFIX}.{host}.*"):
            parts = path.name.removeprefix(f"{SPILL_PREFIX}.{host}.").split(".")
            if not parts[0].isdigit() or pid_alive(int(parts[0])):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


@contextmanager
def spill_folder(wh: Warehouse) -> Iterator[Path | None]:
    """A fresh folder for DuckDB's spill files (``temp_directory``), removed afterwards;
    stale ones of killed processes are removed first. None when no folder can be made
    (DuckDB then keeps the work in memory)."""
    clean_spill(wh)
    name = f"{SPILL_PREFIX}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    folder: Path | None = None
    for parent in _spill_parents(wh):
        try:
            # Never the warehouse folder itself: a reader of a registry on a server may
            # have none here, and must not get an empty ./semwh-warehouse.
            parent.mkdir(exist_ok=True)
            (parent / name).mkdir()
        except OSError:
            continue
        folder = parent / name
        break
    try:
        yield folder
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


class StatementClock:
    """Runs the steps of one user statement under its time limit, stoppable by Ctrl-C.

    DuckDB holds the calling thread while a statement runs, and Python runs signal handlers
    only between bytecodes of the main thread: a statement run there ignores Ctrl-C until it
    ends. Each step runs on a worker thread instead; the main thread waits in short slices,
    so the first SIGINT (or the deadline) interrupts the connection at once.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, timeout: float, where: str) -> None:
        self.conn = conn
        self.timeout = timeout
        self.where = where
        self.deadline = time.monotonic() + timeout if timeout > 0 else None

    def call(self, step: Callable[..., T], *args: Any) -> T:
        """``step(*args)`` on a worker thread; its result, or its exception re-raised.

        Raises:
            ResourceError: The statement ran past its time limit (it is stopped).
            KeyboardInterrupt: Ctrl-C (the statement is stopped first).
        """
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = step(*args)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="semwh-sql", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                left = 0.1 if self.deadline is None else self.deadline - time.monotonic()
                if left <= 0:
                    self._stop(worker)
                    raise ResourceError(
                        f"{self.where}: the statement ran past its time limit of "
                        f"{self.timeout:g} s and was stopped: give it longer with --timeout "
                        f"SECONDS (or {ENV_SQL_TIMEOUT}; 0 for no limit), or narrow it"
                    )
                worker.join(min(0.1, left))
        except KeyboardInterrupt:
            self._stop(worker)
            raise
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def _stop(self, worker: threading.Thread) -> None:
        # An interrupt reaches only a statement already running: repeat it until the
        # worker gives up (the statement may have been about to start).
        deadline = time.monotonic() + _STOP_WAIT_SECONDS
        while worker.is_alive() and time.monotonic() < deadline:
            try:
                self.conn.interrupt()
            except duckdb.Error:
                return
            worker.join(0.05)


@contextmanager
def sandbox_connection(
    wh: Warehouse,
    allow_read: Sequence[str | os.PathLike[str]] = (),
    statements: Iterable[str] | None = None,
    timeout: float | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read connection locked down for user SQL (see :mod:`semwh.warehouse.sandbox`).

    Files can be read only under the vectors root and the ``allow_read`` folders; the
    settings are locked, so no statement can widen that. A vectors folder given for this
    process must be where it reaches the recorded root (:func:`check_vectors_override`).
    ``statements`` are the SQL texts the connection will run: on a registry that is not a
    DuckDB file only the tables they can read are copied (None: every table), and that copy
    stops at the statements' time limit (``timeout``, as :func:`run_sql` reads it).

    Raises:
        SandboxError: An ``allow_read`` folder does not exist, or the vectors folder given
            is not the warehouse's.
    """
    folders = allowed_folders(wh, allow_read)
    limit = sql_timeout(timeout)
    with spill_folder(wh) as spill, read_connection(wh, statements, limit) as conn:
        check_vectors_override(wh, conn)
        if spill is not None:
            conn.execute("SET temp_directory = $folder", {"folder": str(spill)})
        lock_down(conn, folders)
        yield conn


def run_sandboxed(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    where: str = "semwh sql",
    timeout: float | None = None,
) -> pa.Table:
    """Check that ``sql`` is one read statement, then run it on a sandbox connection.

    Args:
        timeout: Seconds it may run (None: ``SEMWH_SQL_TIMEOUT`` or the default; 0: no
            limit).

    Raises:
        SandboxError: Several statements, or a file outside the allowed folders.
        ReadOnlyError: The statement is not a read.
        WarehouseError: The statement is invalid.
        ResourceError: It ran past its time limit.
    """
    check_read_statement(conn, sql, where=where)
    clock = StatementClock(conn, sql_timeout(timeout), where)
    try:
        return clock.call(query_arrow, conn, sql, params)
    except duckdb.Error as exc:
        raise sql_error(exc, where) from exc


def _reader(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None, rows: int
) -> pa.RecordBatchReader:
    rel = conn.sql(sql, params=params or None)
    if rel is None:
        return pa.RecordBatchReader.from_batches(pa.schema([]), [])
    fetch = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
    return fetch(rows)


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def stream_sandboxed(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    where: str = "semwh sql",
    timeout: float | None = None,
    batch_rows: int = STREAM_BATCH_ROWS,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """:func:`run_sandboxed`, with the rows as record batches read from DuckDB one at a time
    (the time limit covers the reads); the connection must stay open while they are read.

    Raises:
        As :func:`run_sandboxed`, from the call or while the batches are read.
    """
    check_read_statement(conn, sql, where=where)
    clock = StatementClock(conn, sql_timeout(timeout), where)
    try:
        reader = clock.call(_reader, conn, sql, params, batch_rows)
    except duckdb.Error as exc:
        raise sql_error(exc, where) from exc

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = clock.call(_next_batch, reader)
            except duckdb.Error as exc:
                raise sql_error(exc, where) from exc
            except pa.ArrowException as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise WarehouseError(f"{where}: SQL error: {first}") from exc
            if batch is None:
                return
            yield batch

    return reader.schema, batches()


@contextmanager
def stream_sql(
    wh: Warehouse,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    allow_read: Sequence[str | os.PathLike[str]] = (),
    timeout: float | None = None,
) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """:func:`run_sql` as a schema and record batches streamed from DuckDB (for outputs
    larger than memory); the batches must be read inside the ``with`` block."""
    with sandbox_connection(wh, allow_read, [sql], timeout) as conn:
        yield stream_sandboxed(conn, sql, params, timeout=timeout)


def run_sql(
    wh: Warehouse,
    sql: str,
    params: dict[str, Any] | None = None,
    *,
    allow_read: Sequence[str | os.PathLike[str]] = (),
    timeout: float | None = None,
) -> QueryResult:
    """Run one read statement in the sandbox and return its rows.

    Args:
        wh: The warehouse.
        sql: Exactly one SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN statement.
        params: Bound ``$name`` parameters.
        allow_read: Folders whose files the statement may read besides the vectors root.
        timeout: Seconds it may run (None: ``SEMWH_SQL_TIMEOUT`` or the default of 600;
            0: no limit).

    Raises:
        SandboxError: Several statements, or a file outside the allowed folders.
        ReadOnlyError: The statement is not a read.
        WarehouseError: The statement is invalid.
        ResourceError: It ran past its time limit.
    """
    with sandbox_connection(wh, allow_read, [sql], timeout) as conn:
        table = run_sandboxed(conn, sql, params, timeout=timeout)
    return QueryResult(table=table, sql=sql)
