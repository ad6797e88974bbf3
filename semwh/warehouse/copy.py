"""Copy a whole registry into another database: a DuckDB warehouse into PostgreSQL and back.

Every registry table is copied row by row in dependency order (a table after the tables it
references), keeping every id; the target's id sequences then continue after the copied ids.
Both registries must be at the schema revision this semwh expects, and the target must be
empty (a database without a schema gets one first). The vector files are not copied: the
target records where they are, so that it reads the same files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Sequence, Table, func, insert, select, text
from sqlalchemy.engine import URL, make_url

from semwh.errors import ConfigError, WarehouseError
from semwh.warehouse.layout import (
    VECTORS_SETTING,
    Warehouse,
    check_db_url,
    stored_vectors_location,
)
from semwh.warehouse.migrate import check_revision, current_revision, head_revision, upgrade
from semwh.warehouse.models import Base, WarehouseSetting

#: Rows sent to the target per INSERT.
BATCH = 2000


@dataclass
class CopySummary:
    """What :func:`copy_registry` copied."""

    target: str
    revision: str
    rows: dict[str, int] = field(default_factory=dict)
    vectors: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def target_warehouse(source: Warehouse, url: str) -> Warehouse:
    """The target of a copy: a registry file's folder, or the source's folder for a server."""
    check_db_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() in ("duckdb", "sqlite"):
        root = Path(str(parsed.database)).expanduser().resolve().parent
    else:
        root = source.root
    return Warehouse(root=root, db_url=url)


def _same_registry(a: Warehouse, b: Warehouse) -> bool:
    """Whether two URLs name one registry, however spelt: the same file (``./x/../x``, a
    link), or the same database on the same server (another user or driver)."""
    if a.registry_file is not None or b.registry_file is not None:
        if a.registry_file is None or b.registry_file is None:
            return False
        return a.registry_file.expanduser().resolve() == b.registry_file.expanduser().resolve()
    ua, ub = make_url(a.db_url), make_url(b.db_url)

    def where(u: URL) -> tuple[object, ...]:
        host = u.host or u.query.get("host") or ""
        return (u.get_backend_name(), str(host).rstrip("/"), u.port or 5432, u.database)

    return where(ua) == where(ub)


def _shown(wh: Warehouse) -> str:
    return wh.shown_url


def _check_target(target: Warehouse, head: str) -> None:
    """Give an empty target the schema; refuse another revision or any row."""
    if target.registry_file is not None:
        target.registry_file.parent.mkdir(parents=True, exist_ok=True)
    revision = current_revision(target)
    if revision is None:
        from sqlalchemy import inspect

        tables = [t for t in inspect(target.engine).get_table_names() if t != "alembic_version"]
        if tables:
            raise WarehouseError(
                f"target registry {_shown(target)} holds tables of another program "
                f"({', '.join(sorted(tables)[:6])}) and no semwh schema: copy into an empty "
                "database"
            )
        upgrade(target, "head")
        revision = current_revision(target)
    if revision != head:
        raise WarehouseError(
            f"target registry {_shown(target)} is at schema revision {revision}, the source "
            f"at {head}: upgrade the target (`semwh --db URL db upgrade`) or copy into an empty "
            "database"
        )
    with target.engine.connect() as conn:
        filled = {
            table.name: n
            for table in Base.metadata.sorted_tables
            if (n := conn.execute(select(func.count()).select_from(table)).scalar_one())
        }
    if filled:
        rows = ", ".join(f"{name}: {n} rows" for name, n in sorted(filled.items()))
        raise WarehouseError(
            f"target registry {_shown(target)} is not empty ({rows}); semwh copies only into "
            "an empty registry: give a new database (or drop this one's tables with "
            "`semwh --db URL db downgrade base --yes`)"
        )


@contextmanager
def _snapshot(source: Warehouse) -> Iterator[Connection]:
    """One read transaction over the source: every table as of the same moment."""
    reader = source.reader() if source.is_duckdb else source
    with reader.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
    if reader is not source:
        reader.dispose()


def _copy_table(src: Connection, dst: Connection, table: Table) -> int:
    order = list(table.primary_key.columns) or list(table.columns)
    result = src.execution_options(yield_per=BATCH).execute(select(table).order_by(*order))
    copied = 0
    for batch in result.mappings().partitions(BATCH):
        dst.execute(table.insert(), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def _sequence_columns() -> dict[str, list[tuple[Table, str]]]:
    """Each id sequence of the models and the key columns it numbers."""
    owners: dict[str, list[tuple[Table, str]]] = {}
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.default, Sequence):
                owners.setdefault(column.default.name, []).append((table, column.name))
    return owners


def _continue_sequences(dst: Connection) -> None:
    """Make every id sequence of the target hand out ids after the copied ones."""
    for name, columns in _sequence_columns().items():
        top = max(
            dst.execute(select(func.max(table.c[column]))).scalar() or 0
            for table, column in columns
        )
        if not top:
            continue
        if dst.dialect.name == "postgresql":
            dst.execute(text("SELECT setval(:s, :v)"), {"s": name, "v": int(top)})
        elif dst.dialect.name == "duckdb":
            # DuckDB has no setval: draw the sequence up to the largest copied id.
            dst.execute(text(f"SELECT max(nextval('{name}')) FROM range({int(top)})"))
        # SQLite has no sequences (its integer keys continue after the largest).


def copy_registry(source: Warehouse, url: str) -> CopySummary:
    """Copy every registry table of ``source`` into the empty registry at ``url``.

    Args:
        source: The warehouse to copy (its registry must be at this semwh's schema head).
        url: The target's SQLAlchemy URL (``postgresql+psycopg://...``,
            ``duckdb:////path/registry.duckdb``); a database without a schema is migrated.

    Returns:
        Rows copied by table, the revision, and the vectors root the target records.

    Raises:
        ConfigError: The target is the source, or not a database URL.
        WarehouseError: Either schema is not at this semwh's head, or the target holds rows.
    """
    start = time.perf_counter()
    target = target_warehouse(source, url)
    if _same_registry(target, source):
        raise ConfigError(f"--to {_shown(target)} is the source registry: give another database")
    check_revision(source)
    head = head_revision()
    _check_target(target, head)
    vectors = source.vectors.location
    recorded = stored_vectors_location(source)
    summary = CopySummary(target=_shown(target), revision=head, vectors=vectors)
    try:
        with _snapshot(source) as src, target.engine.begin() as dst:
            for table in Base.metadata.sorted_tables:
                summary.rows[table.name] = _copy_table(src, dst, table)
            _continue_sequences(dst)
            if recorded is None:
                # The source keeps its vectors in its own folder; the copy, opened from
                # anywhere, reads them there.
                dst.execute(insert(WarehouseSetting), [{"key": VECTORS_SETTING, "value": vectors}])
    finally:
        target.dispose()
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
