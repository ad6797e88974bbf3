"""Warehouse folder layout, URLs, opening, and the busy-error patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.config import load_settings
from semwh.errors import SchemaMismatchError, WarehouseError
from semwh.warehouse.layout import (
    Warehouse,
    busy_message,
    is_busy_error,
    warehouse_from_settings,
)
from semwh.warehouse.migrate import init_warehouse, open_warehouse

# What DuckDB 1.x and 2.x raise when another process holds the file (checked across real
# processes in tests/integration/test_cli_foundation.py), and SQLite's equivalent.
DUCKDB_LOCK = (
    'IO Error: Could not set lock on file "/w/registry.duckdb": Conflicting lock is held in '
    "/usr/bin/python3.11 (PID 4242). See also https://duckdb.org/docs/current/connect/concurrency"
)


def test_default_layout_is_a_duckdb_file_in_the_folder(tmp_path: Path) -> None:
    wh = warehouse_from_settings(load_settings(tmp_path / "wh", environ={}))
    assert wh.root == (tmp_path / "wh").resolve()
    assert wh.is_duckdb
    assert wh.duckdb_path == wh.root / "registry.duckdb"
    assert wh.vectors_root == wh.root / "vectors"
    assert wh.tmp_root == wh.root / "tmp"
    assert not wh.exists()


def test_db_url_from_environment_replaces_the_duckdb_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    wh = warehouse_from_settings(load_settings(tmp_path / "wh", environ={"SEMWH_DB": url}))
    assert wh.db_url == url
    assert not wh.is_duckdb
    assert wh.duckdb_path is None


def test_in_memory_duckdb_has_no_file(tmp_path: Path) -> None:
    assert Warehouse(tmp_path, "duckdb:///:memory:").duckdb_path is None


def test_init_creates_registry_and_vectors_folder(tmp_path: Path) -> None:
    wh = warehouse_from_settings(load_settings(tmp_path / "wh", environ={}))
    before, after = init_warehouse(wh)
    assert before is None
    assert wh.duckdb_path is not None and wh.duckdb_path.is_file()
    assert wh.vectors_root.is_dir()
    assert init_warehouse(wh) == (after, after)


def test_open_missing_warehouse_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match=r"no warehouse at .*semwh --warehouse .* init"):
        open_warehouse(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_open_checks_the_schema_unless_asked_not_to(tmp_path: Path) -> None:
    import duckdb

    root = tmp_path / "wh"
    root.mkdir()
    duckdb.connect(str(root / "registry.duckdb")).close()  # a DuckDB file with no schema
    with pytest.raises(SchemaMismatchError, match="no schema"):
        open_warehouse(root)
    assert open_warehouse(root, check_schema=False).root == root.resolve()


def test_open_up_to_date_warehouse(warehouse: Warehouse) -> None:
    opened = open_warehouse(warehouse.root)
    assert opened.db_url == warehouse.db_url


@pytest.mark.parametrize(
    "text",
    [DUCKDB_LOCK, "IO Error: Could not set lock on file", "database is locked"],
)
def test_lock_messages_are_busy_errors(text: str) -> None:
    assert is_busy_error(RuntimeError(text))


@pytest.mark.parametrize(
    "text", ["Catalog Error: Table with name x does not exist!", "IO Error: No such file"]
)
def test_other_messages_are_not_busy_errors(text: str) -> None:
    assert not is_busy_error(RuntimeError(text))


def test_busy_message_names_file_and_process() -> None:
    text = busy_message("/w/registry.duckdb", RuntimeError(DUCKDB_LOCK))
    assert text.startswith("warehouse busy:")
    assert "PID 4242" in text and "/w/registry.duckdb" in text
    assert "PID" not in busy_message("/w/r", RuntimeError("database is locked"))


def test_dispose_lets_the_engine_be_rebuilt(warehouse: Warehouse) -> None:
    first = warehouse.engine
    warehouse.dispose()
    assert warehouse.engine is not first


def test_a_warehouse_repr_never_shows_the_registry_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://lab:s3cret@dbhost:5432/semwh"
    shown = repr(Warehouse(root=tmp_path, db_url=url))
    assert "s3cret" not in shown and "lab:***@dbhost:5432/semwh" in shown
