"""One sandbox for user SQL whatever the registry: the attack list of a shared lab warehouse,
refused with one line each on a DuckDB registry and on a real PostgreSQL server, changing
nothing there (every table's rows, the roles, large objects and extensions of the server, the
files of the warehouse and a scratch folder).

On PostgreSQL the statement runs in DuckDB over a snapshot of the registry's tables
(:mod:`semwh.warehouse.snapshot`), so the server's own functions (``pg_read_file``,
``lo_import``, ``dblink``) and statements (``COPY … TO PROGRAM``, ``SET ROLE``) never reach it
even though the tests connect as a superuser who could run every one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from semwh.errors import ReadOnlyError, ResourceError, SandboxError, SemwhError
from semwh.results.named import run_query
from semwh.results.report import report_data
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import init_warehouse
from semwh.warehouse.readonly import run_sandboxed, run_sql, sandbox_connection
from semwh.warehouse.snapshot import registry_schema
from tests.conftest import migrated_warehouse
from tests.integration.test_query_data import build_synthetic

pytestmark = pytest.mark.integration

REGISTRIES = ("duckdb", "postgresql")


class Site:
    """A small warehouse on one registry, a scratch folder and a file outside both."""

    def __init__(self, wh: Warehouse, base: Path) -> None:
        self.wh = wh
        build_synthetic(wh)
        self.scratch = base / "scratch"
        self.scratch.mkdir()
        self.outside = base / "private.csv"
        self.outside.write_text("secret\n42\n")

    def fill(self, text: str) -> str:
        return text.format(scratch=self.scratch, outside=self.outside)

    def files(self) -> dict[str, object]:
        """The size and time of every file of the warehouse (a DuckDB registry among them)
        and of the scratch folder."""
        state: dict[str, object] = {}
        for folder in (self.wh.root, self.scratch):
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    state[str(path)] = (stat.st_size, stat.st_mtime_ns)
        return state

    def tables(self, conn: sa.Connection) -> dict[str, object]:
        """Every table of the registry with its row count and, on a server, its roles,
        large objects, extensions and views."""
        state: dict[str, object] = {}
        tables = sorted(
            conn.execute(
                sa.text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                )
            ).scalars()
        )
        counts = " UNION ALL ".join(
            f"SELECT '{table}', count(*) FROM \"{table}\"" for table in tables
        )
        state["tables"] = sorted(conn.execute(sa.text(counts)).fetchall())
        if conn.dialect.name == "postgresql":
            for what, sql in (
                ("roles", "SELECT rolname, rolsuper FROM pg_roles ORDER BY 1"),
                ("large objects", "SELECT count(*) FROM pg_largeobject_metadata"),
                ("extensions", "SELECT extname FROM pg_extension ORDER BY 1"),
                ("views", "SELECT viewname FROM pg_views ORDER BY 1"),
            ):
                state[what] = conn.execute(sa.text(sql)).fetchall()
            conn.rollback()
        return state

    def state(self) -> dict[str, object]:
        with self.wh.engine.connect() as conn:
            return {**self.tables(conn), **self.files()}


@pytest.fixture(scope="module", params=REGISTRIES)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    base = tmp_path_factory.mktemp(request.param)
    if request.param == "duckdb":
        yield Site(migrated_warehouse(base / "wh"), base)
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    wh = Warehouse(root=base / "wh", db_url=url)
    init_warehouse(wh)
    try:
        yield Site(wh, base)
    finally:
        wh.dispose()
        server.drop_database(url.rsplit("/", 1)[1].split("?", 1)[0])


@pytest.fixture
def unchanged(site: Site) -> Iterator[None]:
    before = site.state()
    yield
    assert site.state() == before


# The attack list: each statement, and a word its one-line refusal must hold.
ATTACKS = {
    "insert": ("INSERT INTO concepts (concept, name, origin) VALUES ('n9', 'x', 'y')", "INSERT"),
    "update": ("UPDATE results SET statistic = 1", "UPDATE"),
    "delete": ("DELETE FROM results", "DELETE"),
    "cte-delete": ("WITH x AS (SELECT 1) DELETE FROM concepts", "DELETE"),
    "create": ("CREATE TABLE stolen AS SELECT * FROM concepts", "CREATE"),
    "drop": ("DROP TABLE results", "DROP"),
    "alter": ("ALTER TABLE results ADD COLUMN x INTEGER", "ALTER"),
    "pg-read-file": ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    "pg-ls-dir": ("SELECT * FROM pg_ls_dir('/')", "pg_ls_dir"),
    "lo-import": ("SELECT lo_import('/etc/passwd')", "lo_import"),
    "copy-to-program": ("COPY results TO PROGRAM 'touch {scratch}/pwned'", "error"),
    "copy-query-to-program": ("COPY (SELECT 1) TO PROGRAM 'touch {scratch}/pwned'", "error"),
    "copy-to-file": ("COPY results TO '{scratch}/out.csv'", "COPY"),
    "copy-from-file": ("COPY concepts FROM '{outside}'", "COPY"),
    "multi-statement": ("SELECT 1; DELETE FROM results", "exactly one statement"),
    "set-role": ("SET ROLE postgres", "error"),
    "set-session-authorization": ("SET SESSION AUTHORIZATION postgres", "error"),
    "reset-role": ("RESET ROLE", "SET"),
    "dblink": (
        "SELECT * FROM dblink('dbname=postgres', 'DROP TABLE results') AS t(x text)",
        "dblink",
    ),
    "dblink-exec": ("SELECT dblink_exec('dbname=postgres', 'DELETE FROM results')", "dblink"),
    "attach": ("ATTACH '{scratch}/x.duckdb' AS x", "ATTACH"),
    "install": ("INSTALL postgres_scanner", "INSTALL"),
    "load": ("LOAD postgres_scanner", "LOAD"),
    "read-csv-outside": ("SELECT * FROM read_csv('{outside}')", "--allow-read"),
    "read-parquet-outside": ("SELECT * FROM read_parquet('/etc/*.parquet')", "--allow-read"),
    "read-text-environ": ("SELECT * FROM read_text('/proc/self/environ')", "--allow-read"),
    "set-config": ("SELECT set_config('role', 'postgres', false)", "set_config"),
    "transaction": ("BEGIN", "transaction"),
}


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


def test_attack_list_is_refused_in_one_line_and_changes_nothing(site: Site) -> None:
    """Each attack in turn (one test, so that the warehouse is built once per registry),
    the registry's tables and the files compared after each."""
    before = site.state()
    failures: list[str] = []
    # On a server the tables are compared after each attack through one open connection; a
    # DuckDB registry cannot be held open beside the sandbox's read-only one, and its file's
    # size and time say whether it was written.
    # The attacks run one after another on one sandbox connection (a snapshot of every
    # table on a server), as a named query's report does: none may loosen it for the next.
    watch = site.wh.engine.connect() if not site.wh.is_duckdb else None
    try:
        with sandbox_connection(site.wh, [site.scratch]) as conn:
            outcomes = {}
            for name, (statement, _) in sorted(ATTACKS.items()):
                try:
                    run_sandboxed(conn, site.fill(statement), timeout=10)
                except SemwhError as exc:
                    outcomes[name] = exc
                else:
                    outcomes[name] = None
                now = {**(site.tables(watch) if watch is not None else {}), **site.files()}
                if any(now[key] != before[key] for key in now) or set(now) - set(before):
                    failures.append(f"{name}: changed the registry or the files")
                if (site.scratch / "pwned").exists():
                    failures.append(f"{name}: ran a program")
        for name, (_, word) in sorted(ATTACKS.items()):
            exc = outcomes[name]
            if exc is None:
                failures.append(f"{name}: ran")
            else:
                text = str(exc)
                if "\n" in text or word.lower() not in text.lower():
                    failures.append(f"{name}: refused as {text!r}, not one line naming {word}")
    finally:
        if watch is not None:
            watch.close()
    assert not failures, failures
    assert site.state() == before


def test_runaway_recursive_query_stops_at_the_time_limit(site: Site, unchanged: None) -> None:
    runaway = (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
        "SELECT count(*) FROM r, concepts"
    )
    with pytest.raises(ResourceError) as info:
        run_sql(site.wh, runaway, timeout=0.5)
    assert "time limit" in _one_line(info.value)


def test_reads_answer_alike_on_both_registries(site: Site) -> None:
    """The same rows on either registry: tables, a view, the vectors view, a named query."""
    counts = run_sql(
        site.wh,
        "SELECT (SELECT count(*) FROM results), (SELECT count(*) FROM layer_curves), "
        "(SELECT count(*) FROM vectors), (SELECT sum(rho) FROM results_rsa)",
    ).rows()
    assert counts[0][:3] == (24, 8, 72)
    with site.wh.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT sum(statistic) FROM results WHERE measure = 'rsa'")
        ).scalar()
    assert counts[0][3] == pytest.approx(stored, abs=1e-12)
    curves = run_query(site.wh, "layer_curves").table
    assert curves.num_rows == 8
    # The report's queries on one snapshot of the tables they read.
    report = report_data(site.wh, measures=["rsa"])
    # The report's rows are the query's, with the resample counts its captions name.
    columns = curves.column_names
    assert [{c: row[c] for c in columns} for row in report.curves] == curves.to_pylist()
    assert len(report.measures) == 8
    assert "pearson" in str(run_sql(site.wh, "SELECT options FROM results LIMIT 1").rows())


def test_refusals_keep_their_kinds(site: Site) -> None:
    with pytest.raises(ReadOnlyError):
        run_sql(site.wh, "DELETE FROM results")
    with pytest.raises(SandboxError):
        run_sql(site.wh, "SELECT 1; SELECT 2")


def test_snapshot_reads_only_the_tables_named() -> None:
    schema = registry_schema()
    assert schema.reads(["SELECT * FROM concepts"]) == {
        "concepts",
        "vector_files",
        "warehouse_settings",
    }
    # A view brings the tables behind it; a name inside a string counts too.
    assert {"results", "sweeps", "sweep_members"} <= schema.reads(["FROM layer_curves"])
    assert "results" in schema.reads(["SELECT * FROM query_table('results')"])
    assert schema.reads(None) == set(schema.tables)


def test_a_table_named_as_the_statement_runs_is_in_the_snapshot() -> None:
    # The name is computed, so no word of the text names it: every table is copied rather
    # than an empty concepts read without a word.
    schema = registry_schema()
    for statement in (
        "SELECT count(*) FROM query_table('con' || 'cepts')",
        "SELECT * FROM query('SELECT * FROM ' || chr(99) || 'oncepts')",
    ):
        assert schema.reads([statement]) == set(schema.tables)
    # The word alone (a comment, a column) is not a call.
    assert "results" not in schema.reads(["SELECT 1 AS query -- a query of concepts"])


@pytest.mark.parametrize("site", ["postgresql"], indirect=True)  # DuckDB is read in place
def test_a_large_snapshot_says_so_in_one_line(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # results (24 rows) crosses it; concepts (8), vector_files and warehouse_settings do not.
    monkeypatch.setattr("semwh.warehouse.snapshot.LARGE_SNAPSHOT_ROWS", 20)
    with caplog.at_level(logging.WARNING, logger="semwh"):
        run_sql(site.wh, "SELECT count(*) FROM results")
    lines = [r.getMessage() for r in caplog.records if "snapshot" in r.getMessage()]
    assert len(lines) == 1 and "results" in lines[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="semwh"):
        run_sql(site.wh, "SELECT count(*) FROM concepts")
    assert not [r for r in caplog.records if "snapshot" in r.getMessage()]
