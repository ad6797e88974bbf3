"""Views over the registry and the Parquet tree: the one module that knows Parquet paths in SQL.

``grid_results``, ``layer_curves``, ``measure_curves``, ``result_inference``, ``sweep_curves``
and ``sweep_results`` are persistent views created by migrations, and so are ``results_rsa``,
``results_2v2`` and ``results_measures``: the rows of ``results`` of one measure (or of the
measures besides RSA and 2 vs 2) in the columns of the tables they once were. ``vectors``
depends on where the vectors root is reached from (a mounted folder, an object store), so it
is a temporary view created on every read connection, over the files that are *registered*
in ``vector_files`` only: a half-written or orphaned Parquet file is never visible. A
registered file that is missing or whose size differs from its record makes the view raise a
message naming the files and the repair when it is read, filtered or not (never fewer rows
in silence), while the registry tables stay queryable. On a folder DuckDB reads the files
itself; on an object store it scans an Arrow dataset that reaches them through
:mod:`pyarrow.fs`, with the credentials of the machine running the query.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from semwh.warehouse.storage import VectorsRoot

VIEW_NAMES = frozenset(
    {
        "grid_results",
        "layer_curves",
        "measure_curves",
        "result_inference",
        "results_2v2",
        "results_measures",
        "results_rsa",
        "sweep_curves",
        "sweep_results",
    }
)


def _vector_schema(key: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field("space", pa.string(), nullable=False),
            pa.field(key, pa.string(), nullable=False),
            pa.field("image_id", pa.int64(), nullable=True),
            pa.field("vector", pa.list_(pa.float32()), nullable=False),
        ]
    )


#: The columns of every vector file, and so of the ``vectors`` view: ``semwh.vectors`` writes
#: files of this schema, the view reads them.
VECTOR_FILE_SCHEMA = _vector_schema("concept")

#: Each vector file schema version's key column (``vector_files.schema_version``): files
#: written before concepts had ids of their own (version 1) name the concept ``wnid``.
KEY_COLUMNS = {1: "wnid", 2: "concept"}
SCHEMA_VERSION = 2


def file_schema(version: int) -> pa.Schema:
    """The Parquet schema of a vector file of ``version`` (its key column named as stored)."""
    return _vector_schema(KEY_COLUMNS[version])


# One row of the view's columns, all null; filtered to none for a warehouse without files.
_NULL_ROW = (
    "SELECT CAST(NULL AS VARCHAR) AS space, CAST(NULL AS VARCHAR) AS concept, "
    "CAST(NULL AS BIGINT) AS image_id, CAST(NULL AS FLOAT[]) AS vector"
)
_EMPTY_VECTORS = f"{_NULL_ROW} WHERE false"

# The Arrow dataset behind the view on an object store, registered on the connection.
_REMOTE_FILES = "semwh_vector_files"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _error_body(message: str) -> str:
    """A one-row body that raises ``message`` however it is read.

    The guard in WHERE raises for reads that touch no column (``count(*)``); every column
    is the error too, so a filter on any column (``WHERE space = ...``), which the optimiser
    may evaluate before the guard, raises instead of filtering the row away in silence.
    """
    error = f"error({_quote(message)})"
    columns = ", ".join(
        f"CAST({error} AS {kind}) AS {name}"
        for name, kind in (
            ("space", "VARCHAR"),
            ("concept", "VARCHAR"),
            ("image_id", "BIGINT"),
            ("vector", "FLOAT[]"),
        )
    )
    return f"SELECT {columns} FROM range(1) WHERE {error} IS NULL"


def _damaged(root: VectorsRoot, rows: list[tuple], sizes: list[int | None]) -> str | None:
    """The message for registered files that are missing or differ in size (None: all fine)."""
    missing = [rel for (rel, _), size in zip(rows, sizes, strict=True) if size is None]
    changed = [
        rel
        for (rel, recorded), size in zip(rows, sizes, strict=True)
        if size is not None and recorded is not None and size != recorded
    ]
    if not missing and not changed:
        return None
    parts = []
    for what, rels in (("missing", missing), ("altered (size differs from the record)", changed)):
        if rels:
            shown = ", ".join(root.show(rel) for rel in rels[:5])
            more = f" and {len(rels) - 5} more" if len(rels) > 5 else ""
            parts.append(f"{len(rels)} {what}: {shown}{more}")
    return (
        f"the vectors view cannot be read: registered vector files are {'; '.join(parts)}; "
        "run `semwh repair` to rebuild them (the registry tables can still be queried)"
    )


def _version_body(
    conn: duckdb.DuckDBPyConnection, root: VectorsRoot, version: int, relpaths: list[str]
) -> str:
    """The SELECT of the view's columns over the present files of one schema version."""
    key = KEY_COLUMNS[version]
    columns = f"space, {key} AS concept, image_id, vector"
    if root.is_local:
        listing = "[" + ", ".join(_quote(str(root.local_path(rel))) for rel in relpaths) + "]"
        return f"SELECT {columns} FROM read_parquet({listing}, union_by_name = true)"
    dataset = f"{_REMOTE_FILES}_v{version}"
    conn.register(dataset, root.dataset(relpaths, file_schema(version)))
    return f"SELECT {columns} FROM {dataset}"


def create_vectors_view(
    conn: duckdb.DuckDBPyConnection, root: VectorsRoot, name: str = "vectors"
) -> None:
    """Create a temporary view ``name`` (space, concept, image_id, vector) over registered
    files (files of schema version 1 name their key column ``wnid``; the view says
    ``concept``)."""
    rows = conn.execute(
        "SELECT path, size_bytes, schema_version FROM vector_files ORDER BY file_id"
    ).fetchall()
    relpaths = [row[0] for row in rows]
    try:
        sizes = root.sizes(relpaths)
        by_version: dict[int, list[str]] = {}
        for (rel, _, version), size in zip(rows, sizes, strict=True):
            if size is not None:
                by_version.setdefault(int(version), []).append(rel)
        damaged = _damaged(root, [row[:2] for row in rows], sizes)
        if damaged:
            body = _error_body(damaged)
        elif not by_version:
            body = _EMPTY_VECTORS
        else:
            body = " UNION ALL ".join(
                _version_body(conn, root, version, rels)
                for version, rels in sorted(by_version.items())
            )
    except OSError as exc:
        # An unreachable store must not take the registry tables down with it: the view
        # raises this message when (and only when) a query reads it.
        message = (
            f"the vectors root {root.location} cannot be reached "
            f"({str(exc).splitlines()[0]}); the registry tables can still be queried"
        )
        body = _error_body(message)
    conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")
