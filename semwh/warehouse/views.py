"""Views over the registry and the Parquet tree: the one module that knows Parquet paths in SQL.

``layer_curves`` is a persistent view created by a migration. ``vectors`` depends on where the
warehouse folder is mounted, so it is a temporary view created on every read connection, over
the files that are *registered* in ``vector_files`` only: a half-written or orphaned Parquet
file is never visible.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

VIEW_NAMES = frozenset({"layer_curves"})

VECTOR_COLUMNS = "space, wnid, image_id, vector"

_EMPTY_VECTORS = (
    "SELECT CAST(NULL AS VARCHAR) AS space, CAST(NULL AS VARCHAR) AS wnid, "
    "CAST(NULL AS BIGINT) AS image_id, CAST(NULL AS FLOAT[]) AS vector WHERE false"
)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def registered_files(conn: duckdb.DuckDBPyConnection, vectors_root: Path) -> list[Path]:
    rows = conn.execute("SELECT path FROM vector_files ORDER BY file_id").fetchall()
    return [vectors_root / row[0] for row in rows]


def create_vectors_view(
    conn: duckdb.DuckDBPyConnection, vectors_root: Path, name: str = "vectors"
) -> None:
    """Create a temporary view ``name`` (space, wnid, image_id, vector) over registered files."""
    paths = [p for p in registered_files(conn, vectors_root) if p.exists()]
    if paths:
        listing = "[" + ", ".join(_quote(str(p)) for p in paths) + "]"
        body = f"SELECT {VECTOR_COLUMNS} FROM read_parquet({listing}, union_by_name = true)"
    else:
        body = _EMPTY_VECTORS
    conn.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")
