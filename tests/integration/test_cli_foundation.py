"""The installed `semwh` command: init, sql, db, help, version, errors, busy and old warehouses."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import typer

from semwh import __version__
from semwh.cli import app
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import downgrade, head_revision
from semwh.warehouse.models import Base, Concept
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("holding", flush=True)
time.sleep(120)
"""


def _fails_cleanly(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit code 1 and exactly one line on stderr, no traceback; returns that line."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _w(wh: Warehouse) -> tuple[str, str]:
    return ("--warehouse", str(wh.root))


@pytest.fixture
def filled(warehouse: Warehouse) -> Warehouse:
    with warehouse.session() as session:
        session.add_all(
            [
                Concept(concept="n02084071", name="dog", origin="file", imagenet_index=3),
                Concept(concept="n02121808", name="domestic_cat", origin="file"),
            ]
        )
    warehouse.dispose()
    return warehouse


@pytest.fixture
def holder(request: pytest.FixtureRequest, warehouse: Warehouse) -> Iterator[None]:
    """Another process that holds the registry open (read-write, or read-only with "ro")."""
    mode = getattr(request, "param", "rw")
    warehouse.dispose()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(warehouse.duckdb_path), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_init_creates_and_second_init_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    proc = run_cli("--warehouse", str(root), "init")
    assert f"schema none -> {head_revision()}" in proc.stdout
    assert (root / "registry.duckdb").is_file() and (root / "vectors").is_dir()

    def snapshot() -> tuple[object, ...]:
        con = duckdb.connect(str(root / "registry.duckdb"), read_only=True)
        try:
            return tuple(
                con.execute(q).fetchall()
                for q in (
                    "SELECT table_name, column_name, data_type FROM duckdb_columns() "
                    "WHERE NOT internal ORDER BY ALL",
                    "SELECT * FROM alembic_version",
                    "SELECT sequence_name, last_value FROM duckdb_sequences() ORDER BY ALL",
                )
            )
        finally:
            con.close()

    before = snapshot()
    files_before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = run_cli("--warehouse", str(root), "init")
    assert "up to date" in proc.stdout
    assert snapshot() == before
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == files_before


def test_sql_json_lists_registry_and_results_tables(warehouse: Warehouse) -> None:
    proc = run_cli(
        *_w(warehouse),
        "sql",
        "select table_name from information_schema.tables",
        "--format",
        "json",
    )
    names = {row["table_name"] for row in json.loads(proc.stdout)}
    assert set(Base.metadata.tables) <= names
    assert {"concepts", "images", "spaces", "results_rsa", "results_2v2", "layer_curves"} <= names


def test_version() -> None:
    assert run_cli("--version").stdout.strip() == f"semwh {__version__}"


def _walk(command, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:  # noqa: ANN001
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


def test_every_command_and_group_has_help_ending_with_an_example() -> None:
    """Walks the whole command tree, so commands added later are held to the same rule."""
    seen, missing = [], []
    for path, command in _walk(typer.main.get_command(app), ("semwh",)):
        name = " ".join(path)
        help_text = (command.help or "").strip()  # type: ignore[attr-defined]
        lines = help_text.splitlines() or [""]
        if not lines[-1].strip().startswith("Example: semwh"):
            missing.append(name)
        seen.append(name)
    assert not missing, f"help does not end with an 'Example: semwh ...' line: {missing}"
    assert {"semwh", "semwh init", "semwh sql", "semwh db", "semwh db upgrade"} <= set(seen)


def test_rendered_help_shows_the_example() -> None:
    assert "Example: semwh" in run_cli("--help", fresh=True).stdout


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """`semwh --help` and every command's start-up import torch, scipy and the stages on use."""
    probe = (
        "import sys, semwh.cli; "
        "print(' '.join(m for m in ('torch', 'scipy.stats', 'semwh.workflow.stages', "
        "'semwh.analyze', 'transformers', 'timm') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


def test_sql_refuses_writes(filled: Warehouse) -> None:
    # Other kinds of writes are refused the same way: tests/unit/warehouse/test_readonly.py.
    statement = (
        "INSERT INTO concepts (concept, name, origin, created_at) VALUES ('n1','x','y',now())"
    )
    line = _fails_cleanly(run_cli(*_w(filled), "sql", statement, check=False))
    assert "read-only" in line and "semwh sql" in line
    proc = run_cli(*_w(filled), "sql", "SELECT count(*) AS n FROM concepts", "-f", "csv")
    assert proc.stdout.splitlines() == ["n", "2"]


def test_sql_formats(filled: Warehouse, tmp_path: Path) -> None:
    query = "SELECT concept, name, imagenet_index FROM concepts ORDER BY concept"
    expected = [("n02084071", "dog", 3), ("n02121808", "domestic_cat", None)]

    table = run_cli(*_w(filled), "sql", query).stdout
    assert "n02084071" in table and "domestic_cat" in table and "imagenet_index" in table

    rows = list(csv.reader(io.StringIO(run_cli(*_w(filled), "sql", query, "-f", "csv").stdout)))
    assert rows == [
        ["concept", "name", "imagenet_index"],
        ["n02084071", "dog", "3"],
        ["n02121808", "domestic_cat", ""],
    ]

    doc = json.loads(run_cli(*_w(filled), "sql", query, "--format", "json").stdout)
    assert [(r["concept"], r["name"], r["imagenet_index"]) for r in doc] == expected

    out = tmp_path / "out" / "concepts.parquet"
    proc = run_cli(*_w(filled), "sql", query, "--format", "parquet", "--out", str(out))
    assert "wrote 2 rows" in proc.stderr
    got = pq.read_table(out)
    assert list(zip(*got.to_pydict().values(), strict=True)) == expected

    line = _fails_cleanly(run_cli(*_w(filled), "sql", query, "-f", "parquet", check=False))
    assert "--out" in line


def test_warehouse_from_environment(tmp_path: Path) -> None:
    env = {"SEMWH_WAREHOUSE": str(tmp_path / "envwh")}
    run_cli("init", env=env)
    assert (tmp_path / "envwh" / "registry.duckdb").is_file()
    proc = run_cli("sql", "SELECT count(*) AS n FROM spaces", "-f", "csv", env=env)
    assert proc.stdout.splitlines() == ["n", "0"]


def test_bad_kernel_choice_is_one_line_before_any_work(tmp_path: Path) -> None:
    # Without permutations no kernel is chosen: the setting is still checked, first.
    args = ("-w", str(tmp_path / "none"), "analyze", "2v2", "--a", "x", "--b", "y", "-n", "0")
    line = _fails_cleanly(run_cli(*args, env={"SEMWH_KERNELS": "fast"}, check=False))
    assert "SEMWH_KERNELS='fast' is not a kernel choice (choose auto, numba, numpy)" in line


def test_missing_warehouse_says_how_to_create_it(tmp_path: Path) -> None:
    line = _fails_cleanly(run_cli("-w", str(tmp_path / "none"), "sql", "SELECT 1", check=False))
    assert "init" in line
    assert not (tmp_path / "none").exists()


def test_busy_warehouse(warehouse: Warehouse, holder: None) -> None:
    """Another process has the registry open read-write: commands say so in one line."""
    for args in (("sql", "SELECT 1"), ("init",)):
        line = _fails_cleanly(run_cli(*_w(warehouse), *args, check=False))
        assert line.startswith("error: warehouse busy:"), line
        assert str(warehouse.duckdb_path) in line and "PID" in line


@pytest.mark.parametrize("holder", ["ro"], indirect=True)
def test_other_readers_block_only_schema_changes(warehouse: Warehouse, holder: None) -> None:
    """Readers share the file (a notebook with read_only=True); writers must wait for them."""
    out = run_cli(*_w(warehouse), "sql", "SELECT 41 + 1 AS x", "-f", "csv").stdout
    assert out.splitlines() == ["x", "42"]
    assert "up to date" in run_cli(*_w(warehouse), "init").stdout
    line = _fails_cleanly(run_cli(*_w(warehouse), "db", "downgrade", "base", "--yes", check=False))
    assert line.startswith("error: warehouse busy:"), line


def test_too_old_schema(tmp_path: Path, warehouse: Warehouse) -> None:
    head = head_revision()
    # A DuckDB file with no schema at all, and a warehouse downgraded below every revision.
    bare = tmp_path / "bare"
    bare.mkdir()
    duckdb.connect(str(bare / "registry.duckdb")).close()
    downgrade(warehouse, "base")
    warehouse.dispose()
    for root in (bare, warehouse.root):
        line = _fails_cleanly(run_cli("-w", str(root), "sql", "SELECT 1", check=False))
        assert "revision none" in line and f"expects {head}" in line
        assert "db upgrade" in line
    run_cli("-w", str(bare), "db", "upgrade")
    assert run_cli("-w", str(bare), "sql", "SELECT 1 AS one", "-f", "csv").stdout.split() == [
        "one",
        "1",
    ]


def test_too_new_schema(warehouse: Warehouse) -> None:
    with warehouse.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dcafe'")
    warehouse.dispose()
    head = head_revision()
    for args in (("sql", "SELECT 1"), ("db", "upgrade"), ("init",)):
        line = _fails_cleanly(run_cli(*_w(warehouse), *args, check=False))
        assert "f00dcafe" in line and head in line and "newer semwh" in line
        assert "semwh db downgrade" in line
    assert "f00dcafe" in run_cli(*_w(warehouse), "db", "current").stdout

    proc = run_cli("--debug", *_w(warehouse), "sql", "SELECT 1", check=False)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "SchemaMismatchError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_db_commands(warehouse: Warehouse) -> None:
    head = head_revision()
    hist = run_cli("db", "history").stdout
    assert f"base -> {head.split()[0]}" in hist or f"-> {head}" in hist
    assert "up to date" in run_cli(*_w(warehouse), "db", "current").stdout
    assert (
        "schema now at base" in run_cli(*_w(warehouse), "db", "downgrade", "base", "--yes").stdout
    )
    assert "none" in run_cli(*_w(warehouse), "db", "current").stdout
    assert f"schema now at {head}" in run_cli(*_w(warehouse), "db", "upgrade").stdout
    line = _fails_cleanly(run_cli(*_w(warehouse), "db", "downgrade", "zz", check=False))
    assert "unknown revision 'zz'" in line and head in line


def test_error_text_is_printed_verbatim(warehouse: Warehouse) -> None:
    """Brackets in a message (SQL identifiers, types) are not taken as terminal markup."""
    line = _fails_cleanly(run_cli(*_w(warehouse), "sql", 'SELECT * FROM "[/x]"', check=False))
    assert "[/x]" in line
