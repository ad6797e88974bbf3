"""A lab registry on a real PostgreSQL server used carelessly: a password in the URL, a
database that holds another program's tables, a reader without the warehouse folder, a copy
onto its own source spelt another way. Each ends in one line that never shows the password."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from semwh.errors import ConfigError, ResourceError, SchemaMismatchError, WarehouseError
from semwh.warehouse.copy import copy_registry
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import confirm_downgrade, init_warehouse, open_warehouse
from semwh.warehouse.readonly import run_sql

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-pw"


def with_password(url: str) -> str:
    """``url`` with a password (the tests' server trusts its socket and ignores it)."""
    return url.replace("semwh@", f"semwh:{PASSWORD}@", 1)


def _conninfo(url: str) -> dict[str, str]:
    parsed = make_url(url)
    return {"dbname": str(parsed.database), "host": str(parsed.query["host"]), "user": "semwh"}


def test_init_refuses_another_programs_database_without_the_password(
    postgres_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(**_conninfo(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id integer)")
    wh = Warehouse(root=tmp_path / "wh", db_url=with_password(postgres_url))
    with pytest.raises(WarehouseError) as info:
        init_warehouse(wh)
    wh.dispose()
    text = str(info.value)
    assert "invoices" in text and PASSWORD not in text and "\n" not in text
    with psycopg.connect(**_conninfo(postgres_url)) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert tables == [("invoices",)]


def test_a_lab_member_reads_the_server_registry_without_the_warehouse_folder(
    postgres_url: str, tmp_path: Path
) -> None:
    url = with_password(postgres_url)
    # Before anyone ran init: the line says to init the registry, not a local folder.
    with pytest.raises(SchemaMismatchError) as info:
        open_warehouse(tmp_path / "member" / "semwh-warehouse", url)
    assert "--db URL init" in str(info.value) and PASSWORD not in str(info.value)
    lab = Warehouse(root=tmp_path / "lab" / "semwh-warehouse", db_url=url)
    init_warehouse(lab)
    shared = lab.vectors.location
    # The one who initialised it may not remove all rows without --yes; the refusal hides
    # the password.
    with pytest.raises(ConfigError) as info:
        confirm_downgrade(lab, "base", confirmed=False)
    assert PASSWORD not in str(info.value)
    lab.dispose()
    # A member elsewhere, who only sets SEMWH_DB: reads, and finds the lab's vectors root.
    elsewhere = tmp_path / "member" / "semwh-warehouse"
    wh = open_warehouse(elsewhere, url)
    try:
        assert wh.vectors.location == shared
        rows = run_sql(wh, "SELECT count(*) FROM concepts, vectors").rows()
        # Reading the server's tables for a statement counts against its time limit.
        with pytest.raises(ResourceError, match="reading the registry's tables") as info:
            run_sql(wh, "SELECT * FROM warehouse_settings", timeout=1e-9)
        assert "\n" not in str(info.value)
    finally:
        wh.dispose()
    assert rows == [(0,)]
    assert not elsewhere.exists()


def test_copy_refuses_its_own_source_spelt_another_way(postgres_url: str, tmp_path: Path) -> None:
    # Refused before either registry is opened.
    source = Warehouse(root=tmp_path / "wh", db_url=f"duckdb:///{tmp_path}/wh/registry.duckdb")
    spelt = f"duckdb:///{tmp_path}/wh/../wh/registry.duckdb"
    with pytest.raises(ConfigError, match="is the source registry"):
        copy_registry(source, spelt)
    server = Warehouse(root=tmp_path / "wh", db_url=postgres_url)
    other_user = postgres_url.replace("semwh@", f"someone:{PASSWORD}@", 1) + "/"
    with pytest.raises(ConfigError, match="is the source registry") as info:
        copy_registry(server, other_user)
    assert PASSWORD not in str(info.value)


def _init(folder: str, url: str) -> str:
    """`semwh init` in a forked process: its error line, or the vectors root it reports."""
    wh = Warehouse(root=Path(folder), db_url=url)
    try:
        init_warehouse(wh)
        return f"vectors root: {wh.vectors.location}"
    except Exception as exc:  # noqa: BLE001 - handed back to the test as text
        return f"error: {type(exc).__name__}: {exc}"
    finally:
        wh.dispose()


def test_two_inits_at_once_make_one_schema(postgres_url: str, tmp_path: Path) -> None:
    """Two lab members run `semwh init` on the same new database at the same moment: one
    migrates, the other waits (saying so) and finds the schema; both end without an error
    and report the vectors root the registry records."""
    folders = [str(tmp_path / "a" / "wh"), str(tmp_path / "b" / "wh")]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        said = pool.starmap(_init, [(folder, postgres_url) for folder in folders])
    wh = open_warehouse(tmp_path / "elsewhere", postgres_url)
    recorded = wh.vectors.location
    wh.dispose()
    assert said == [f"vectors root: {recorded}"] * 2
