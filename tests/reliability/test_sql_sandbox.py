"""The sandbox of `semwh sql` and named queries, and the rule of user output files.

A security corpus against a real small warehouse (migrated DuckDB registry, registered Parquet
vectors) and a second warehouse beside it: every attack is refused with exactly one line and
changes nothing — the row count of every registry table, the bytes and mtime of every file
under both warehouses, and the scratch folder are compared before and after. A representative
subset goes through the installed CLI (exit code 1, one line on stderr); the rest through the
library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from semwh.config import load_settings
from semwh.errors import (
    ConfigError,
    MissingDependencyError,
    OutputError,
    ReadOnlyError,
    SandboxError,
    SemwhError,
)
from semwh.results.named import export_table, run_query
from semwh.results.output import to_csv, to_json
from semwh.warehouse.layout import Warehouse, check_db_url
from semwh.warehouse.readonly import run_sql
from tests.conftest import migrated_warehouse, run_cli
from tests.integration.test_query_data import WNIDS, build_synthetic
from tests.reliability.conftest import ForkServer

pytestmark = pytest.mark.integration


class Site:
    """The warehouse under attack, another warehouse beside it, and a scratch folder."""

    def __init__(self, base: Path) -> None:
        self.wh = migrated_warehouse(base / "wh")
        build_synthetic(self.wh)
        self.other = migrated_warehouse(base / "other")
        self.scratch = base / "scratch"
        self.scratch.mkdir()
        self.lab = base / "lab"
        self.lab.mkdir()
        self.ratings = self.lab / "ratings.csv"
        self.ratings.write_text(
            "concept,typicality\n" + "".join(f"{w},{i}\n" for i, w in enumerate(WNIDS))
        )
        self.outside = base / "private.csv"
        self.outside.write_text("secret\n42\n")
        # A link in a readable folder to the other warehouse's registry.
        self.link = self.scratch / "innocent.duckdb"
        self.link.symlink_to(self.registry(self.other))
        with duckdb.connect(str(self.registry(self.wh)), read_only=True) as con:
            rel = con.execute("SELECT path FROM vector_files ORDER BY file_id").fetchone()
        assert rel is not None
        self.vector_file = self.wh.vectors_root / rel[0]

    @staticmethod
    def registry(wh: Warehouse) -> Path:
        assert wh.duckdb_path is not None
        return wh.duckdb_path

    def fill(self, text: str) -> str:
        return text.format(
            scratch=self.scratch,
            registry=self.registry(self.wh),
            other=self.registry(self.other),
            vector_file=self.vector_file,
            vectors=self.wh.vectors_root,
            link=self.link,
            outside=self.outside,
        )

    def snapshot(self) -> dict[str, object]:
        """Row counts of every table of both registries, and every file's bytes and mtime."""
        state: dict[str, object] = {}
        for wh in (self.wh, self.other):
            with duckdb.connect(str(self.registry(wh)), read_only=True) as con:
                tables = [
                    r[0]
                    for r in con.execute(
                        "SELECT table_name FROM duckdb_tables() ORDER BY 1"
                    ).fetchall()
                ]
                for table in tables:
                    n = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
                    state[f"{wh.root.name}.{table}"] = n[0] if n else None
                version = con.execute("SELECT version_num FROM alembic_version").fetchall()
                state[f"{wh.root.name}.alembic_version.rows"] = version
            for folder in (wh.root,):
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        st = path.stat()
                        state[str(path)] = (st.st_size, st.st_mtime_ns, path.read_bytes())
        state["scratch"] = sorted(p.name for p in self.scratch.rglob("*"))
        return state


@dataclass(frozen=True)
class Ran:
    """A finished `semwh` process."""

    returncode: int
    stdout: str
    stderr: str


Semwh = Callable[..., Ran]


@pytest.fixture
def semwh(forks: ForkServer) -> Semwh:
    """Run `semwh` as a separate process (forked from a process that imported semwh once)."""

    def call(*args: str, env: dict[str, str] | None = None, check: bool = True) -> Ran:
        child = forks.run(*args, env=env)
        assert child.code is not None
        ran = Ran(child.code, child.stdout, child.stderr)
        if check:
            assert ran.returncode == 0, f"semwh {' '.join(args)} failed:\n{ran.stderr}"
        return ran

    return call


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return Site(tmp_path_factory.mktemp("sandbox"))


@pytest.fixture
def unchanged(site: Site) -> Iterator[None]:
    """Fails the test if anything in either warehouse or the scratch folder changed."""
    before = site.snapshot()
    yield
    after = site.snapshot()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"the attack changed {changed}"


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


# Statements that must be refused, with a word each refusal must contain.
ATTACKS = {
    "attach-use-detach-delete": (
        "ATTACH '{scratch}/s.duckdb' AS s (READ_WRITE); USE s; DETACH registry; "
        "ATTACH '{registry}' AS r (READ_WRITE); DELETE FROM r.word_tokens",
        "exactly one statement",
    ),
    "attach-other-warehouse": ("ATTACH '{other}' AS o (READ_WRITE)", "ATTACH"),
    "rewrite-other-alembic": (
        "ATTACH '{other}' AS o (READ_WRITE); UPDATE o.alembic_version SET version_num = 'x'",
        "exactly one statement",
    ),
    "attach-through-symlink": ("ATTACH '{link}' AS o", "ATTACH"),
    "copy-over-vector-file": (
        "COPY (SELECT 1 AS x) TO '{vector_file}' (FORMAT parquet)",
        "COPY",
    ),
    "explain-analyze-copy": ("EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{vector_file}'", "COPY"),
    "explain-commented-copy": (
        "EXPLAIN /* x */ ANALYZE -- y\n COPY (SELECT 1 AS x) TO '{vector_file}'",
        "COPY",
    ),
    "explain-options-delete": ("EXPLAIN (FORMAT json) DELETE FROM concepts", "DELETE"),
    "export-database": ("EXPORT DATABASE '{scratch}/exported'", "EXPORT"),
    "import-database": ("IMPORT DATABASE '{scratch}/exported'", "PRAGMA"),
    "read-environ": ("SELECT * FROM read_text('/proc/self/environ')", "--allow-read"),
    "getenv": ("SELECT getenv('HOME')", "getenv"),
    "read-blob": ("SELECT * FROM read_blob('/etc/passwd')", "--allow-read"),
    "glob-etc": ("SELECT * FROM glob('/etc/*')", "--allow-read"),
    "read-csv-outside": ("SELECT * FROM read_csv('{outside}')", "--allow-read"),
    # DuckDB keeps the open registry file itself readable (its bytes, read-only); the other
    # warehouse beside it is not, even named from inside the vectors root.
    "read-other-registry-via-dotdot": (
        "SELECT * FROM read_blob('{vectors}/../../other/registry.duckdb')",
        "--allow-read",
    ),
    "read-through-symlink": ("SELECT * FROM read_blob('{link}')", "--allow-read"),
    "remote-url": ("SELECT * FROM read_csv('https://example.com/x.csv')", "--allow-read"),
    "install": ("INSTALL httpfs", "INSTALL"),
    "load": ("LOAD httpfs", "LOAD"),
    "set": ("SET enable_external_access = true", "SET"),
    "reset": ("RESET lock_configuration", "SET"),
    "set-variable": ("SET VARIABLE x = 1", "SET"),
    "use": ("USE memory", "USE"),
    "pragma": ("PRAGMA database_list", "PRAGMA"),
    "call": ("CALL pragma_version()", "CALL"),
    "checkpoint": ("CHECKPOINT", "CHECKPOINT"),
    "detach": ("DETACH registry", "DETACH"),
    "create-temp": ("CREATE TEMP TABLE t AS SELECT 1 AS x", "CREATE"),
    "begin": ("BEGIN TRANSACTION", "transaction"),
    "comment-hides-delete": ("SELECT 1; -- \n DELETE FROM concepts", "exactly one statement"),
    "block-comment-hides-delete": (
        "SELECT 1 /* ; */; /* x */ DELETE FROM concepts",
        "exactly one statement",
    ),
    "commented-select-then-delete": ("/* SELECT 1; */ DELETE FROM concepts", "DELETE"),
    "cte-insert": (
        "WITH x AS (SELECT 1) INSERT INTO concepts (concept, name, origin) SELECT 'n9', 'x', 'y'",
        "INSERT",
    ),
    "cte-delete": ("WITH x AS (SELECT 1) DELETE FROM concepts", "DELETE"),
    "update": ("UPDATE alembic_version SET version_num = 'x'", "UPDATE"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_refused_in_one_line_and_changes_nothing(
    site: Site, unchanged: None, name: str
) -> None:
    statement, word = ATTACKS[name]
    with pytest.raises(SemwhError) as info:
        run_sql(site.wh, site.fill(statement), allow_read=[site.scratch])
    assert word.lower() in _one_line(info.value).lower()


@pytest.mark.parametrize(
    "name",
    ["attach-use-detach-delete", "copy-over-vector-file", "read-environ", "cte-delete", "set"],
)
def test_attack_through_the_cli_exits_1_with_one_line(
    site: Site, unchanged: None, name: str, semwh: Semwh
) -> None:
    statement, word = ATTACKS[name]
    proc = semwh("--warehouse", str(site.wh.root), "sql", site.fill(statement), check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "Warning" not in line and line.strip()]
    lines = [line for line in lines if not line.startswith("  warnings.warn")]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert word.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr


def test_the_installed_command_refuses_several_statements(site: Site, unchanged: None) -> None:
    statement = site.fill(ATTACKS["attach-use-detach-delete"][0])
    proc = run_cli("--warehouse", str(site.wh.root), "sql", statement, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("error:") == 1 and "exactly one statement" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refusals_name_their_kind(site: Site) -> None:
    with pytest.raises(ReadOnlyError, match="refused: COPY"):
        run_sql(site.wh, site.fill(ATTACKS["copy-over-vector-file"][0]))
    with pytest.raises(SandboxError, match="got 2"):
        run_sql(site.wh, "SELECT 1; SELECT 2")
    with pytest.raises(SandboxError, match="no SQL statement"):
        run_sql(site.wh, "-- nothing")


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM concepts",
        "WITH x AS (SELECT wnid FROM concepts) SELECT count(*) FROM x",
        "VALUES (1, 'a'), (2, 'b')",
        "FROM concepts SELECT wnid LIMIT 1",
        "DESCRIBE concepts",
        "SHOW TABLES",
        "SUMMARIZE concepts",
        "EXPLAIN SELECT * FROM concepts",
        "EXPLAIN ANALYZE SELECT count(*) FROM vectors",
        "EXPLAIN /* a */ ANALYZE -- b\n (FORMAT json) SELECT 1",
        "SELECT space, count(*) FROM vectors GROUP BY space",
        "SELECT * FROM read_parquet('{vector_file}') LIMIT 1",
        "SELECT count(*) FROM glob('{vectors}/**')",
        "SELECT current_setting('enable_external_access') AS v",
        "SELECT count(*) FROM duckdb_settings()",
        "/* a comment */ SELECT 1 -- and another",
    ],
)
def test_reads_run(site: Site, statement: str) -> None:
    result = run_sql(site.wh, site.fill(statement))
    assert result.table.num_columns >= 1


def test_the_settings_are_locked_down(site: Site) -> None:
    rows = run_sql(
        site.wh,
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
        "'lock_configuration', 'autoload_known_extensions', 'autoinstall_known_extensions')",
    ).rows()
    assert dict(rows) == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
    }


# -- lab data -----------------------------------------------------------------------------------


def test_lab_data_join_needs_allow_read(site: Site) -> None:
    params = {"path": str(site.ratings)}
    with pytest.raises(SandboxError, match="--allow-read") as info:
        run_query(site.wh, "external_join_csv", params)
    _one_line(info.value)
    table = run_query(site.wh, "external_join_csv", params, allow_read=[site.lab]).table
    assert "typicality" in table.column_names
    # A sibling folder whose name starts the same is not allowed by the prefix.
    twin = site.lab.with_name(site.lab.name + "-private")
    twin.mkdir(exist_ok=True)
    (twin / "r.csv").write_text("concept,x\nn1,1\n")
    with pytest.raises(SandboxError):
        run_sql(site.wh, f"SELECT * FROM read_csv('{twin / 'r.csv'}')", allow_read=[site.lab])


def test_lab_data_join_through_the_cli(site: Site, semwh: Semwh) -> None:
    base = ("--warehouse", str(site.wh.root), "query", "external_join_csv")
    args = (*base, "-p", f"path={site.ratings}", "-f", "csv")
    refused = semwh(*args, check=False)
    assert refused.returncode == 1 and "--allow-read" in refused.stderr
    ok = semwh(*args, "--allow-read", str(site.lab))
    assert ok.stdout.splitlines()[0].endswith(",typicality")
    via_env = semwh(
        *args, env={"SEMWH_ALLOW_READ": os.pathsep.join([str(site.scratch), str(site.lab)])}
    )
    assert via_env.stdout == ok.stdout


def test_allow_read_settings() -> None:
    env = {"SEMWH_ALLOW_READ": os.pathsep.join(["/a", "", "~/b"])}
    settings = load_settings("wh", environ=env)
    assert settings.allow_read == (Path("/a"), Path("~/b").expanduser())
    assert load_settings("wh", environ={}).allow_read == ()


def test_allow_read_must_be_a_folder(site: Site) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        run_sql(site.wh, "SELECT 1", allow_read=[site.scratch / "missing"])
    with pytest.raises(SandboxError, match="not a folder"):
        run_sql(site.wh, "SELECT 1", allow_read=[site.outside])


# -- outputs ------------------------------------------------------------------------------------


def test_sql_out_onto_the_registry_is_refused(site: Site, unchanged: None, semwh: Semwh) -> None:
    registry = site.registry(site.wh)
    proc = semwh(
        "--warehouse", str(site.wh.root), "sql", "SELECT 1 AS x", "-f", "csv",
        "--out", str(registry), "--force", check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "inside the warehouse" in proc.stderr
    with duckdb.connect(str(registry), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM concepts").fetchone() == (len(WNIDS),)


def test_export_onto_a_registered_vector_file_is_refused(
    site: Site, unchanged: None, semwh: Semwh
) -> None:
    proc = semwh(
        "--warehouse", str(site.wh.root), "export", "concepts", str(site.vector_file), "--force",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "inside the warehouse" in proc.stderr
    # Through a symlink to the vectors root, too.
    link = site.scratch.parent / "vectors-link"
    if not link.exists():
        link.symlink_to(site.wh.vectors_root)
    with pytest.raises(OutputError, match="inside the warehouse"):
        export_table(site.wh, "concepts", link / "x.parquet")


def test_existing_file_needs_force(site: Site, tmp_path: Path, semwh: Semwh) -> None:
    out = tmp_path / "c.csv"
    out.write_text("old\n")
    base = ("--warehouse", str(site.wh.root), "sql", "SELECT wnid FROM concepts", "-f", "csv")
    proc = semwh(*base, "--out", str(out), check=False)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert out.read_text() == "old\n"
    semwh(*base, "--out", str(out), "--force")
    assert out.read_text().splitlines()[0] == "wnid"
    with pytest.raises(OutputError, match="--force"):
        export_table(site.wh, "concepts", out)
    info = export_table(site.wh, "concepts", out, force=True)
    assert info.n_rows == len(WNIDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]  # no temporary left


def test_output_folders(site: Site, tmp_path: Path, semwh: Semwh) -> None:
    with pytest.raises(OutputError, match="is a folder") as info:
        export_table(site.wh, "concepts", tmp_path)
    _one_line(info.value)
    deep = tmp_path / "new" / "deeper" / "concepts.parquet"
    assert export_table(site.wh, "concepts", deep).n_rows == len(WNIDS)
    assert deep.is_file()
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        export_table(site.wh, "concepts", blocker / "c.csv")
    proc = semwh(
        "--warehouse", str(site.wh.root), "sql", "SELECT 1 AS x", "-o", str(tmp_path), check=False
    )
    assert proc.returncode == 1 and "is a folder" in proc.stderr


def test_report_folder_rules(site: Site, tmp_path: Path) -> None:
    from semwh.results.report import build_report

    with pytest.raises(OutputError, match="inside the warehouse"):
        build_report(site.wh, site.wh.root / "report")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="--force"):
        build_report(site.wh, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


# -- values in CSV and JSON ---------------------------------------------------------------------

VALUES_SQL = (
    "SELECT sum(x) AS total, CAST(7 AS HUGEINT) AS huge, CAST(12 AS DECIMAL(20, 0)) AS dec0, "
    "CAST(1.50 AS DECIMAL(5, 2)) AS dec2, CAST(x AS DOUBLE) / 2 AS half, "
    "CAST('nan' AS DOUBLE) AS nan, CAST('inf' AS DOUBLE) AS pinf, "
    "CAST('-inf' AS DOUBLE) AS ninf, CAST(NULL AS DOUBLE) AS missing "
    "FROM range(4) AS t(x) GROUP BY x ORDER BY x DESC LIMIT 1"
)


def test_csv_and_json_keep_integers_and_non_finite_values(site: Site) -> None:
    table = run_sql(site.wh, VALUES_SQL).table
    assert to_csv(table).splitlines() == [
        "total,huge,dec0,dec2,half,nan,pinf,ninf,missing",
        "3,7,12,1.50,1.5,NaN,inf,-inf,",
    ]
    assert json.loads(to_json(table)) == [
        {
            "total": 3,
            "huge": 7,
            "dec0": 12,
            "dec2": 1.5,
            "half": 1.5,
            "nan": "NaN",
            "pinf": "Infinity",
            "ninf": "-Infinity",
            "missing": None,
        }
    ]


def test_lists_keep_non_finite_values() -> None:
    table = pa.table({"v": [[1.0, float("nan"), None]]})
    assert to_csv(table).splitlines()[1] == '"[1.0, ""NaN"", null]"'
    assert json.loads(to_json(table)) == [{"v": [1.0, "NaN", None]}]


def test_cli_json_and_csv_files(site: Site, tmp_path: Path, semwh: Semwh) -> None:
    base = ("--warehouse", str(site.wh.root), "sql", VALUES_SQL)
    semwh(*base, "-f", "json", "-o", str(tmp_path / "v.json"))
    assert json.loads((tmp_path / "v.json").read_text())[0]["total"] == 3
    semwh(*base, "-o", str(tmp_path / "v.csv"))  # the format from the extension
    assert (tmp_path / "v.csv").read_text().splitlines()[1].startswith("3,7,12,")


# -- settings errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "error", "word"),
    [
        ("bogus", ConfigError, "not a database URL"),
        ("foo://bar", ConfigError, "unknown database kind"),
        ("duckdb:///:memory:", ConfigError, "in-memory"),
        ("duckdb://", ConfigError, "in-memory"),
        ("sqlite://", ConfigError, "in-memory"),
    ],
)
def test_bogus_registry_urls(url: str, error: type[Exception], word: str) -> None:
    with pytest.raises(error, match=word) as info:
        check_db_url(url)
    assert url in _one_line(info.value)


def test_registry_url_without_its_driver() -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="psycopg2"):
            check_db_url("postgresql://x/y")
    else:
        pytest.skip("psycopg2 is installed here")


@pytest.mark.parametrize("url", ["bogus", "duckdb:///:memory:"])
def test_bogus_registry_url_through_the_cli(site: Site, url: str, semwh: Semwh) -> None:
    proc = semwh(
        "--warehouse", str(site.wh.root), "sql", "SELECT 1", env={"SEMWH_DB": url}, check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "SEMWH_DB" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_downgrade_to_base_needs_yes(site: Site, unchanged: None, semwh: Semwh) -> None:
    proc = semwh("--warehouse", str(site.wh.root), "db", "downgrade", "base", check=False)
    assert proc.returncode == 1 and "--yes" in proc.stderr
