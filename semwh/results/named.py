"""Named queries (the SQL files in ``queries/``) and table export.

Every query file starts with a header in SQL comments::

    -- name: layer_curves
    -- purpose: what the rows are (continuation lines are indented by two spaces)
    -- param: model VARCHAR = NULL  only this model (NULL: every model)
    -- param: space_a VARCHAR = required  a parameter without a default
    -- columns: model, layer, ...
    -- choices: test = 2v2, rsa; method = spearman, pearson  (optional: allowed values;
                ``@measures`` stands for every registered measure)
    -- range: alpha = (0, 1); bins = [1, 1000]  (optional: allowed numbers)

Parameters are DuckDB ``$name`` parameters, always bound, never spliced into the SQL text.
Values given as text (``-p key=value`` on the command line) are converted to the declared
type; ``NULL`` (any case) is the SQL null. Every number is checked before it is bound
(:mod:`semwh.validate`): NaN and infinities never, and a declared range is enforced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.results.output import atomic_output, check_output, csv_lines
from semwh.validate import Range, check_number, parse_range
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.readonly import (
    QueryResult,
    run_sandboxed,
    sandbox_connection,
    stream_sandboxed,
)
from semwh.warehouse.sandbox import sql_error

# Rows per batch streamed from DuckDB to an export file (memory stays flat for big views).
EXPORT_BATCH_ROWS = 65_536
TYPES = ("VARCHAR", "DOUBLE", "INTEGER", "BOOLEAN")
REQUIRED = "required"

_PARAM_RE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[A-Z]+)\s*=\s*(?P<rest>.*)$")
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class QueryParam:
    """One declared parameter of a named query."""

    name: str
    type: str
    default: Any
    required: bool
    description: str


@dataclass(frozen=True)
class NamedQuery:
    """A query file: its header and SQL."""

    name: str
    purpose: str
    params: tuple[QueryParam, ...]
    columns: tuple[str, ...]
    sql: str
    path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def param(self, name: str) -> QueryParam:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(
            f"query {self.name!r} has no parameter {name!r} (valid: {self.param_names()})"
        )

    def param_names(self) -> str:
        return ", ".join(p.name for p in self.params) or "none"


def queries_dir() -> Path:
    """The folder of query files, inside the installed package or the source tree."""
    return Path(str(files("semwh.queries")))


def _convert(text: str, type_: str, where: str) -> Any:
    """A header default or command-line value, as the declared type."""
    value = text.strip()
    if value.upper() == "NULL":
        return None
    if type_ == "VARCHAR":
        if len(value) >= 2 and value[0] == value[-1] == "'":
            return value[1:-1].replace("''", "'")
        return value
    try:
        if type_ == "INTEGER":
            return int(value)
        if type_ == "DOUBLE":
            return float(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a valid {type_}") from None
    if type_ == "BOOLEAN":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{where}: {value!r} is not a valid BOOLEAN (true or false)")
    raise ConfigError(f"{where}: unknown parameter type {type_} (choose {', '.join(TYPES)})")


def _parse_param(text: str, where: str) -> QueryParam:
    match = _PARAM_RE.match(text.strip())
    if not match:
        raise InputError(
            f"{where}: parameter line must read 'NAME TYPE = DEFAULT  description', "
            f"got {text.strip()!r}"
        )
    type_ = match["type"]
    if type_ not in TYPES:
        raise InputError(f"{where}: unknown parameter type {type_} (choose {', '.join(TYPES)})")
    rest = match["rest"]
    # The default ends at two spaces; quoted defaults may hold single spaces.
    default_text, _, description = rest.partition("  ")
    default_text = default_text.strip()
    required = default_text == REQUIRED
    default = None if required else _convert(default_text, type_, where)
    return QueryParam(match["name"], type_, default, required, description.strip())


def parse_query(text: str, path: Path) -> NamedQuery:
    """Parse a query file's header; the whole file is the SQL.

    Raises:
        InputError: The header lacks a field or a line is malformed (names file and line).
    """
    fields: dict[str, list[str]] = {}
    params: list[QueryParam] = []
    last: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        body = stripped[2:]
        where = f"{path}:{lineno}"
        key, sep, value = body.strip().partition(":")
        if sep and _NAME_RE.match(key) and not body.startswith("   "):
            last = key
            if key == "param":
                params.append(_parse_param(value, where))
            else:
                fields.setdefault(key, []).append(value.strip())
        elif last is not None and last != "param":
            fields[last].append(body.strip())
        elif last == "param" and params:
            p = params[-1]
            params[-1] = QueryParam(
                p.name, p.type, p.default, p.required, f"{p.description} {body.strip()}"
            )
    for key in ("name", "purpose", "columns"):
        if key not in fields:
            raise InputError(f"{path}: query header lacks '-- {key}:'")
    _ranges(" ".join(fields.get("range", [])), {p.name: p.type for p in params}, str(path))
    name = " ".join(fields["name"])
    if name != path.stem:
        raise InputError(f"{path}: header name {name!r} differs from the file name {path.stem!r}")
    columns = " ".join(fields["columns"])
    return NamedQuery(
        name=name,
        purpose=" ".join(fields["purpose"]),
        params=tuple(params),
        columns=tuple(c.strip() for c in columns.split(",") if c.strip()),
        sql=text,
        path=path,
        extra={k: " ".join(v) for k, v in fields.items() if k not in ("name", "purpose")},
    )


def list_queries(folder: Path | None = None) -> list[NamedQuery]:
    """Every named query, sorted by name."""
    root = folder or queries_dir()
    return [parse_query(p.read_text(), p) for p in sorted(root.glob("*.sql"))]


def query_catalogue(folder: Path | None = None) -> pa.Table:
    """The named queries as a table (``semwh query --list``): name, parameters (with their
    defaults, or "(required)") and purpose, one row per query."""
    queries = list_queries(folder)
    return pa.table(
        {
            "name": [q.name for q in queries],
            "parameters": [
                ", ".join(
                    f"{p.name}{' (required)' if p.required else f'={p.default}'}" for p in q.params
                )
                for q in queries
            ],
            "purpose": [q.purpose for q in queries],
        }
    )


def load_query(name: str, folder: Path | None = None) -> NamedQuery:
    """The named query ``name``.

    Raises:
        NotFoundError: No such query (the message lists the known ones).
    """
    root = folder or queries_dir()
    path = root / f"{name}.sql"
    if not _NAME_RE.match(name) or not path.is_file():
        known = ", ".join(q.name for q in list_queries(root))
        raise NotFoundError(f"unknown query {name!r} (known queries: {known})")
    return parse_query(path.read_text(), path)


def bind_params(query: NamedQuery, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The bound parameter values: given values (text converted to the type) over defaults.

    Raises:
        ConfigError: An unknown parameter (the message lists valid ones), a missing
            required one, or a value outside the parameter's declared choices.
    """
    given = dict(values or {})
    unknown = sorted(set(given) - {p.name for p in query.params})
    if unknown:
        raise ConfigError(
            f"query {query.name!r} has no parameter {', '.join(map(repr, unknown))} "
            f"(valid: {query.param_names()})"
        )
    bound: dict[str, Any] = {}
    for p in query.params:
        if p.name in given:
            value = given[p.name]
            if isinstance(value, str):
                value = _convert(value, p.type, f"query {query.name!r} parameter {p.name}")
            bound[p.name] = value
        elif p.required:
            raise ConfigError(
                f"query {query.name!r} needs parameter {p.name} ({p.description}): "
                f"pass -p {p.name}=VALUE"
            )
        else:
            bound[p.name] = p.default
    for name, allowed in param_choices(query).items():
        value = bound.get(name)
        if value is not None and str(value) not in allowed:
            raise ConfigError(
                f"query {query.name!r} parameter {name}: unknown value {value!r} "
                f"(choose {', '.join(allowed)})"
            )
    ranges = param_ranges(query)
    for p in query.params:
        value = bound.get(p.name)
        if value is None and p.name in ranges and p.default is not None:
            # NULL would skip the declared range (and every comparison with it is NULL).
            raise ConfigError(
                f"query {query.name!r} parameter {p.name} must be "
                f"{ranges[p.name].describe()}, got NULL; leave it out for its default {p.default}"
            )
        if value is not None and p.type in ("DOUBLE", "INTEGER"):
            limits = ranges.get(p.name, Range(integer=p.type == "INTEGER"))
            bound[p.name] = check_number(value, f"query {query.name!r} parameter {p.name}", limits)
    return bound


def _ranges(text: str, types: Mapping[str, str], where: str) -> dict[str, Range]:
    out: dict[str, Range] = {}
    for part in text.split(";"):
        name, sep, interval = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        if types.get(name) not in ("DOUBLE", "INTEGER"):
            raise InputError(f"{where}: '-- range:' names {name!r}, not a numeric parameter")
        try:
            out[name] = parse_range(interval, integer=types[name] == "INTEGER")
        except ValueError as exc:
            raise InputError(f"{where}: '-- range:' of {name}: {exc}") from None
    return out


def param_ranges(query: NamedQuery) -> dict[str, Range]:
    """The allowed numbers of parameters, from the header's ``-- range:`` line
    (``alpha = (0, 1); bins = [1, 1000]``; an empty side is unbounded)."""
    types = {p.name: p.type for p in query.params}
    return _ranges(query.extra.get("range", ""), types, str(query.path))


#: In a ``-- choices:`` line, every registered measure (:func:`semwh.measures.names`).
MEASURES_TOKEN = "@measures"


def param_choices(query: NamedQuery) -> dict[str, tuple[str, ...]]:
    """The allowed values of parameters, from the header's ``-- choices:`` line
    (``name = a, b, c; other = x, y``)."""
    out: dict[str, tuple[str, ...]] = {}
    for part in query.extra.get("choices", "").split(";"):
        name, sep, values = part.partition("=")
        if sep:
            listed: list[str] = []
            for value in (v.strip() for v in values.split(",")):
                if value == MEASURES_TOKEN:
                    from semwh import measures

                    listed.extend(measures.names())
                elif value:
                    listed.append(value)
            out[name.strip()] = tuple(dict.fromkeys(listed))
    return out


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["key=value", ...]`` from the command line as a dict (values stay text)."""
    result: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"parameter {item!r} must read key=value")
        result[key.strip()] = value
    return result


def run_named(
    conn: duckdb.DuckDBPyConnection,
    query: NamedQuery,
    values: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
) -> QueryResult:
    """Run a named query on a sandbox connection (``sandbox_connection``): one read statement.

    Raises:
        SandboxError: The query reads a file outside the allowed folders.
        ReadOnlyError: The query file holds something other than one read statement.
        ResourceError: It ran past its time limit (``timeout`` as for ``run_sandboxed``).
    """
    params = bind_params(query, values)
    table = run_sandboxed(conn, query.sql, params, where=_where(query), timeout=timeout)
    return QueryResult(table=table, sql=query.sql)


def _where(query: NamedQuery) -> str:
    return f"query {query.name!r} ({query.path})"


def run_query(
    wh: Warehouse,
    name: str,
    params: Mapping[str, Any] | None = None,
    folder: Path | None = None,
    *,
    allow_read: Sequence[str | os.PathLike[str]] = (),
    timeout: float | None = None,
) -> QueryResult:
    """Run the named query ``name`` in the sandbox with bound parameters.

    Args:
        wh: The warehouse.
        name: The query's name (its file in ``queries/``).
        params: Parameter values (text is converted to the declared types).
        folder: Another folder of query files.
        allow_read: Folders whose files the query may read (the lab-data joins need the
            folder of their ``path``).
        timeout: Seconds it may run (None: ``SEMWH_SQL_TIMEOUT`` or the default; 0: none).
    """
    query = load_query(name, folder)
    bound = bind_params(query, params)
    with sandbox_connection(wh, allow_read, [query.sql], timeout) as conn:
        return run_named(conn, query, bound, timeout=timeout)


@contextmanager
def stream_query(
    wh: Warehouse,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    allow_read: Sequence[str | os.PathLike[str]] = (),
    timeout: float | None = None,
) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """:func:`run_query` as a schema and record batches streamed from DuckDB; the batches
    must be read inside the ``with`` block."""
    query = load_query(name)
    bound = bind_params(query, params)
    with sandbox_connection(wh, allow_read, [query.sql], timeout) as conn:
        yield stream_sandboxed(conn, query.sql, bound, where=_where(query), timeout=timeout)


def relation_names(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables and views a user can export (temporary views such as ``vectors`` included)."""
    rows = conn.execute(
        "SELECT DISTINCT table_name FROM information_schema.tables "
        "WHERE table_schema = 'main' ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows if r[0] != "alembic_version"]


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class ExportInfo:
    """What ``export_table`` wrote."""

    table: str
    path: Path
    format: str
    n_rows: int


def export_table(wh: Warehouse, table: str, out: Path, *, force: bool = False) -> ExportInfo:
    """Write a table or view to Parquet or CSV, chosen by the extension of ``out``.

    The name is checked against the warehouse's tables and views, then quoted as an
    identifier; the rows stream from DuckDB (in the sandbox) to the file in batches. The file
    follows the rule of every user output (:func:`semwh.results.output.atomic_output`):
    written whole or not at all, never inside the warehouse, never over a file without
    ``force``.

    Raises:
        ConfigError: The extension is neither .parquet nor .csv.
        NotFoundError: No such table or view (the message lists them).
        OutputError: ``out`` is inside the warehouse, a folder, or exists without ``force``.
    """
    protected = wh.protected_paths
    check_output(out, protected, force=force)  # before any work: a refused path costs nothing
    suffix = out.suffix.lower()
    formats = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
    if suffix not in formats:
        raise ConfigError(f"cannot tell the format of {out}: use a .parquet or .csv file name")
    fmt = formats[suffix]
    with sandbox_connection(wh, statements=[table]) as conn:
        names = relation_names(conn)
        if table not in names:
            raise NotFoundError(
                f"unknown table or view {table!r} (choose from: {', '.join(names)})"
            )
        counts: list[int] = []
        try:
            reader = conn.sql(f"SELECT * FROM {_quote_identifier(table)}").to_arrow_reader(
                EXPORT_BATCH_ROWS
            )

            def batches() -> Iterator[pa.RecordBatch]:
                for batch in reader:
                    counts.append(batch.num_rows)
                    yield batch

            with atomic_output(out, protected, force=force) as tmp:
                if fmt == "parquet":
                    with pq.ParquetWriter(tmp, reader.schema) as writer:
                        for batch in batches():
                            writer.write_batch(batch)
                else:
                    with tmp.open("w", encoding="utf-8", newline="") as handle:
                        handle.writelines(csv_lines(batches(), reader.schema.names))
        except duckdb.Error as exc:
            # A damaged vector file (the view's guard) or one DuckDB cannot decode: one line,
            # and no output file (atomic_output removed its temporary file).
            raise sql_error(exc, f"semwh export {table}") from exc
    return ExportInfo(table=table, path=out, format=fmt, n_rows=sum(counts))


__all__ = [
    "ExportInfo",
    "NamedQuery",
    "QueryParam",
    "bind_params",
    "export_table",
    "list_queries",
    "load_query",
    "parse_assignments",
    "queries_dir",
    "relation_names",
    "run_named",
    "run_query",
    "stream_query",
]
