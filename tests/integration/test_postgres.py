"""The registry on a real PostgreSQL server (tests/postgres.py starts one per session) with
the vectors in a folder of their own, as a lab shares one: `semwh init` and a small study's
run file (ingest, extraction, sweeps, RDMs and noise ceilings, a peak-layer test, a grid)
give the results they give on DuckDB and `verify` reproduces them; `semwh db copy` moves a
DuckDB warehouse into PostgreSQL and back with every row equal."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, select

from semwh.config import load_settings
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.models import Base
from semwh.workflow.pipeline import run_pipeline
from semwh.workflow.runfile import load_config
from tests.conftest import registry_args, run_cli
from tests.integration.test_pipeline_own_stimuli import things_study
from tests.postgres import PostgresServer

pytestmark = pytest.mark.integration

#: The study of test_pipeline_own_stimuli (a lab's concepts and photos, words, a ratings space,
#: subjects' RDMs, a small network and a peak-layer test), plus the network's random-weights
#: control and a grid of the two.
EXTRA = {
    'layers = "stem,head"\n': 'layers = "stem,head"\nrandom_control = true\n',
    "[analysis]\n": '[[grids]]\na = "tiny_net"\nb = "tiny_net-random"\npermutations = 20\n\n'
    "[analysis]\n",
}


def study(root: Path, samples_dir: Path) -> Path:
    run = things_study(root, samples_dir)
    text = run.read_text()
    for old, new in EXTRA.items():
        assert old in text
        text = text.replace(old, new)
    run.write_text(text)
    return run


#: Columns a run fills from the clock: when it ran and how long it took.
CLOCKS = {
    f"{table.name}.{column.name}"
    for table in Base.metadata.sorted_tables
    for column in table.columns
    if isinstance(column.type, DateTime)
} | {".seconds"}


def snapshot(wh: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """Every registry table's rows, in key order."""
    out = {}
    with wh.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(select(table).order_by(*order)).mappings().all()
            out[table.name] = [dict(r) for r in rows]
    wh.dispose()
    return out


def differences(
    a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]], skip=()
) -> list[str]:
    """Where two snapshots differ (floats to 1e-12), leaving out ``skip`` (table.column or
    .column for every table)."""
    found = []
    for table in a:
        if len(a[table]) != len(b[table]):
            found.append(f"{table}: {len(a[table])} rows vs {len(b[table])}")
            continue
        for ra, rb in zip(a[table], b[table], strict=True):
            for column, va in ra.items():
                if f"{table}.{column}" in skip or f".{column}" in skip:
                    continue
                vb = rb[column]
                if isinstance(va, float) and isinstance(vb, float):
                    same = (math.isnan(va) and math.isnan(vb)) or abs(va - vb) <= 1e-12
                else:
                    same = va == vb
                if not same:
                    found.append(f"{table}.{column}: {va!r} vs {vb!r}")
    return found


@pytest.fixture(scope="module")
def registries(
    tmp_path_factory: pytest.TempPathFactory, samples_dir: Path, postgres_server: PostgresServer
) -> dict[str, Warehouse]:
    """The same run file on a DuckDB warehouse and on PostgreSQL with a shared vectors folder
    (created by `semwh init`, as a user creates it)."""
    root = tmp_path_factory.mktemp("registries")
    config = study(root / "study", samples_dir)
    duck = warehouse_from_settings(load_settings(root / "duck"))
    from semwh.warehouse.migrate import init_warehouse

    init_warehouse(duck)
    run_pipeline(duck, load_config(config))
    duck.dispose()
    url = postgres_server.create_database()
    shared = root / "shared-vectors"
    pg_args = ["--warehouse", str(root / "pg"), "--db", url]
    run_cli(*pg_args, "--vectors", str(shared), "init")
    pg = warehouse_from_settings(load_settings(root / "pg", url))
    run_pipeline(pg, load_config(config))
    pg.dispose()
    return {"duckdb": duck, "postgres": pg}


def test_a_run_gives_the_same_results_on_postgresql(registries: dict[str, Warehouse]) -> None:
    """Every row of every table is the same (statistics and p-values to 1e-12, the same
    sweep families and members), but for the clocks, the warehouse folder in the image
    manifest's path and the vectors root the PostgreSQL registry records."""
    duck, pg = snapshot(registries["duckdb"]), snapshot(registries["postgres"])
    for rows, wh in ((duck, registries["duckdb"]), (pg, registries["postgres"])):
        for row in rows["sources"]:
            row["name"], row["path"] = (
                str(row[k]).replace(str(wh.root), "<wh>") for k in ("name", "path")
            )
    # The DuckDB warehouse keeps its vectors in its own folder (no setting recorded).
    assert duck.pop("warehouse_settings") == []
    assert differences(duck, {**pg, "warehouse_settings": None}, CLOCKS | {".images_per_s"}) == []
    # 2 vs 2 and RSA of 2 networks x 2 layers against 3 targets, and the grid's 2 x 2 cells.
    assert len(duck["results"]) >= 2 * 2 * 2 * 3 + 4
    assert pg["noise_ceilings"] and pg["subject_results"] and pg["grid_cells"]
    assert {s["status"] for s in pg["sweeps"]} == {"complete"}
    assert len(pg["sweep_members"]) > len(pg["results"]) // 2
    # The vectors are in the shared folder the registry records, not in the warehouse folder.
    shared = Path(pg["warehouse_settings"][0]["value"])
    assert shared.name == "shared-vectors"
    assert not list((registries["postgres"].root / "vectors").rglob("*.parquet"))
    files = {f["path"] for f in pg["vector_files"]}
    assert files and all((shared / f).is_file() for f in files)


def test_verify_reproduces_every_result_on_postgresql(registries: dict[str, Warehouse]) -> None:
    pg = registries["postgres"]
    # Exits 1 unless every result reproduces exactly and every file matches its record.
    proc = run_cli(*registry_args(pg), "verify", "--all", "--format", "csv")
    assert proc.stdout.count("reproduced") >= len(snapshot(pg)["results"])


def test_export_on_postgresql(registries: dict[str, Warehouse], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pg = registries["postgres"]
    out = tmp_path / "results.parquet"
    run_cli(*registry_args(pg), "export", "results", str(out))
    assert pq.read_table(out).num_rows == len(snapshot(pg)["results"])


def _open(root: Path, url: str) -> Warehouse:
    return warehouse_from_settings(load_settings(root, url))


def test_db_copy_moves_a_duckdb_warehouse_into_postgresql_and_back(
    registries: dict[str, Warehouse], postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Every row arrives unchanged, the ids continue after the copied ones, and the copy
    reads the vectors where the source keeps them."""
    from sqlalchemy import text

    from semwh.vectors import load_space

    duck = registries["duckdb"]
    before = snapshot(duck)
    url = postgres_server.create_database()
    proc = run_cli(*registry_args(duck), "db", "copy", "--to", url)
    total = sum(len(rows) for rows in before.values())
    assert f"copied {total} rows of {len(before)} tables" in proc.stdout
    back_url = f"duckdb:///{tmp_path / 'back' / 'registry.duckdb'}"
    (tmp_path / "pg").mkdir()
    run_cli("--warehouse", str(tmp_path / "pg"), "--db", url, "db", "copy", "--to", back_url)

    vectors = str(duck.vectors.location)
    expected = {name: rows for name, rows in before.items() if name != "warehouse_settings"}
    for copy in (_open(tmp_path / "pg", url), _open(tmp_path / "back", back_url)):
        rows = snapshot(copy)
        assert rows.pop("warehouse_settings")[0]["value"] == vectors
        assert differences(expected, rows) == []
        assert copy.vectors.location == vectors
        assert (load_space(copy, "glove").matrix == load_space(duck, "glove").matrix).all()
        with copy.engine.begin() as conn:
            tables = ("results", "results_recovery", "results_diff")
            top = max(r["result_id"] for t in tables for r in before[t])
            assert conn.execute(text("SELECT nextval('results_id_seq')")).scalar() == top + 1
        copy.dispose()

    # A target that holds rows, or a schema at another revision, is refused in one line.
    proc = run_cli(*registry_args(duck), "db", "copy", "--to", url, check=False)
    assert proc.returncode == 1
    assert "is not empty (analysis_runs:" in proc.stderr and "Traceback" not in proc.stderr
    from semwh.warehouse.migrate import upgrade

    older = postgres_server.create_database()
    upgrade(Warehouse(tmp_path / "older", older), "0001")
    proc = run_cli(*registry_args(duck), "db", "copy", "--to", older, check=False)
    assert proc.returncode == 1
    assert "is at schema revision 0001" in proc.stderr
