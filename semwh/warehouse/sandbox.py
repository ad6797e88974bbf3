"""The sandbox of user SQL (`semwh sql`, named queries): one read statement, locked down.

Two layers, both DuckDB's own:

* **The statement check.** DuckDB's parser splits the text (``extract_statements``) and names
  each statement's kind. Exactly one statement is accepted, and only a read: SELECT (which
  covers WITH, VALUES, FROM-first queries, DESCRIBE, SHOW, SUMMARIZE, PIVOT with an IN list and
  table-function calls inside them) or EXPLAIN of such a statement. Everything else is refused
  before anything runs: writes hidden in CTEs (``WITH … DELETE`` parses as DELETE), COPY and
  EXPORT (which would write inside the allowed folders), ATTACH, DETACH, USE, SET, PRAGMA,
  CALL, INSTALL, LOAD, CREATE (temporary objects included), transactions.
* **The connection settings.** Before the statement runs, file access is limited to the
  vectors root and the folders the user allows (``allowed_directories`` with
  ``enable_external_access = false``), extensions are neither installed nor loaded
  automatically, and ``lock_configuration`` stops the statement from changing any of it.
  ``read_text('/proc/self/environ')``, ``read_blob``, ``glob('/etc/*')``, ``read_csv`` of a
  file elsewhere, ``ATTACH`` and remote URLs all fail with DuckDB's permission error.

The registry itself is opened read-only, so a write that got past both layers would still fail.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import duckdb

from semwh.errors import ReadOnlyError, SandboxError, SemwhError, WarehouseError
from semwh.warehouse.layout import VECTORS_SETTING, Warehouse

# Statement kinds that only read. SELECT is what DuckDB reports for SELECT, WITH … SELECT,
# VALUES, FROM-first queries, DESCRIBE, SHOW and SUMMARIZE.
READ_KINDS = frozenset({duckdb.StatementType.SELECT})
_EXPLAIN = duckdb.StatementType.EXPLAIN
_SKIPPED_AFTER_EXPLAIN = frozenset({"ANALYZE", "ANALYSE"})

# What each refused kind is, in the words of the refusal.
_KIND_WORDS = {
    "ATTACH": "ATTACH (other databases are not reachable from semwh sql)",
    "DETACH": "DETACH",
    "COPY": "COPY (write query results with --out FILE)",
    "COPY_DATABASE": "COPY FROM DATABASE",
    "EXPORT": "EXPORT DATABASE (use `semwh export TABLE FILE`)",
    "LOAD": "INSTALL/LOAD of extensions",
    "EXTENSION": "extension statements",
    "SET": "SET/RESET/USE",
    "VARIABLE_SET": "SET VARIABLE",
    "PRAGMA": "PRAGMA/IMPORT DATABASE",
    "CALL": "CALL/CHECKPOINT",
    "MULTI": "a statement DuckDB runs as several (for PIVOT, list the values: PIVOT … IN (…))",
    "TRANSACTION": "transaction statements",
}


def _kind_name(kind: duckdb.StatementType) -> str:
    return str(kind).rsplit(".", 1)[-1]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _explained(conn: duckdb.DuckDBPyConnection, text: str, where: str) -> None:
    """Check the statement inside ``EXPLAIN [ANALYZE] [(options)] …`` (ANALYZE runs it)."""
    every = duckdb.tokenize(text)
    ends = [offset for offset, _ in every[1:]] + [len(text)]
    spans = [
        (offset, text[offset:end].strip())
        for (offset, kind), end in zip(every, ends, strict=True)
        if kind != duckdb.token_type.comment
    ]
    tokens = [offset for offset, _ in spans]
    words = [word for _, word in spans]
    i = 1  # past EXPLAIN
    if i < len(words) and words[i].upper() in _SKIPPED_AFTER_EXPLAIN:
        i += 1
    if i < len(words) and words[i] == "(":
        depth = 0
        while i < len(words):
            depth += words[i].count("(") - words[i].count(")")
            i += 1
            if depth <= 0:
                break
    if i >= len(words):
        raise SandboxError(f"{where}: EXPLAIN needs a statement to explain")
    check_read_statement(conn, text[tokens[i] :], where=where, inner=True)


def check_read_statement(
    conn: duckdb.DuckDBPyConnection, sql: str, *, where: str = "semwh sql", inner: bool = False
) -> None:
    """Accept exactly one read statement, as DuckDB's parser sees it.

    Args:
        conn: Any DuckDB connection (only its parser is used; nothing runs).
        sql: The user's text.
        where: What to name in the message (``semwh sql``, or the query and its file).
        inner: The text is the statement inside an EXPLAIN.

    Raises:
        SandboxError: Several statements, none, or one that is not a read.
        WarehouseError: The text does not parse.
    """
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"{where}: SQL error: {_one_line(str(exc))}") from exc
    if not statements:
        raise SandboxError(f"{where}: no SQL statement given")
    if len(statements) > 1:
        kinds = ", ".join(_kind_name(s.type) for s in statements)
        raise SandboxError(
            f"{where} runs exactly one statement; got {len(statements)} ({kinds}): "
            "run them one at a time"
        )
    statement = statements[0]
    if statement.type in READ_KINDS:
        return
    if statement.type == _EXPLAIN and not inner:
        _explained(conn, statement.query, where)
        return
    name = _kind_name(statement.type)
    what = _KIND_WORDS.get(name, name)
    raise ReadOnlyError(
        f"{where} is read-only and runs one SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE "
        f"or EXPLAIN statement; refused: {what}. Writes go through semwh commands"
    )


def _folder_text(path: Path) -> str:
    # DuckDB matches allowed directories as path prefixes: end with a separator so that
    # /data/lab does not also allow /data/lab-private.
    return str(path).rstrip(os.sep) + os.sep


def allowed_folders(wh: Warehouse, allow_read: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """The folders user SQL may read: the vectors root (on a folder) and ``allow_read``.

    Raises:
        SandboxError: An ``--allow-read`` folder does not exist or is not a folder.
    """
    folders: list[str] = []
    if wh.vectors.is_local:
        folders.append(_folder_text(wh.vectors.local_path("").resolve()))
    for item in allow_read:
        path = Path(item).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise SandboxError(
                f"allowed folder {item} (--allow-read or SEMWH_ALLOW_READ) {what}: "
                "give a folder to read files from"
            )
        folders.append(_folder_text(path.resolve()))
    return folders


def check_vectors_override(wh: Warehouse, conn: duckdb.DuckDBPyConnection) -> None:
    """A vectors folder given for this process (``--vectors``, ``SEMWH_VECTORS``) must be
    where it reaches the root the warehouse records: SQL may read every file under it, so
    ``--vectors /`` must not open the whole filesystem. It is checked by the warehouse's
    first registered vector files (present there, with their recorded sizes).

    Raises:
        SandboxError: The folder does not hold those files, or the warehouse has none yet to
            check it by (and it is not the recorded root).
    """
    if wh.vectors_location is None or not wh.vectors.is_local:
        return
    row = conn.execute(
        "SELECT value FROM warehouse_settings WHERE key = ?", [VECTORS_SETTING]
    ).fetchone()
    recorded = wh.open_vectors(row[0] if row else None)
    if recorded.location == wh.vectors.location:
        return
    files = conn.execute(
        "SELECT path, size_bytes FROM vector_files ORDER BY file_id LIMIT 3"
    ).fetchall()
    sizes = wh.vectors.sizes([path for path, _ in files])
    if files and all(
        size is not None and (want is None or size == want)
        for (_, want), size in zip(files, sizes, strict=True)
    ):
        return
    why = (
        "does not hold the warehouse's vector files"
        if files
        else "cannot be checked: the warehouse registers no vector files yet"
    )
    raise SandboxError(
        f"vectors folder {wh.vectors.location} (--vectors or SEMWH_VECTORS) {why} (the "
        f"warehouse records {recorded.location}); SQL reads files under it, so give the "
        "folder where this machine reaches the recorded root, or leave --vectors out"
    )


def lock_down(conn: duckdb.DuckDBPyConnection, folders: Sequence[str]) -> None:
    """Limit file access to ``folders``, turn off extension autoloading, lock the settings.

    An object-store vectors root keeps working: its files are scanned through the Arrow
    dataset registered on the connection before the lock, not through DuckDB's file system.
    """
    conn.execute("SET allowed_directories = $folders", {"folders": list(folders)})
    conn.execute("SET enable_external_access = false")
    conn.execute("SET autoinstall_known_extensions = false")
    conn.execute("SET autoload_known_extensions = false")
    # DuckDB's progress bar would write into the rows a long query prints to stdout.
    conn.execute("SET enable_progress_bar = false")
    conn.execute("SET lock_configuration = true")


def sql_error(exc: duckdb.Error, where: str) -> SemwhError:
    """One line for a DuckDB error of user SQL; permission errors say how to allow a read."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException):
        return SandboxError(
            f"{where}: {first}; SQL reads files only under the vectors root and folders "
            "allowed with --allow-read DIR (or SEMWH_ALLOW_READ): allow the file's folder"
        )
    if isinstance(exc, duckdb.InvalidInputException) and "read-only" in first:
        return ReadOnlyError(f"{where} is read-only: writes go through semwh commands ({first})")
    return WarehouseError(f"{where}: SQL error: {first}")


__all__ = [
    "READ_KINDS",
    "allowed_folders",
    "check_vectors_override",
    "check_read_statement",
    "lock_down",
    "sql_error",
]
