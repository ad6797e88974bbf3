"""Shared fixtures: real warehouses built by the migrations, and the sample image folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semwh.config import REGISTRY_FILENAME, load_settings
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import init_warehouse
from tests.forkserver import shared_server
from tests.postgres import PostgresServer, missing_reason, running_postgres_server
from tests.s3server import CREDENTIALS, S3Server, running_s3_server

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "datasets" / "imagenet-200"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core, at most four (each loads real models; CLI runs fork)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    """An empty warehouse on a real DuckDB file, created by running the migrations."""
    wh = warehouse_from_settings(load_settings(tmp_path / "wh"))
    init_warehouse(wh)
    return wh


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The 1000 ImageNet sample photos; tests that need them skip when the folder is absent."""
    folder = Path(os.environ.get("SEMWH_SAMPLES", SAMPLES))
    if not folder.is_dir():
        pytest.skip(f"sample images not found at {folder} (set SEMWH_SAMPLES)")
    return folder


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local S3-compatible server (its own process) and credentials in the environment."""
    pytest.importorskip("moto", reason="the object-store tests need moto[server] (dev extra)")
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        with running_s3_server() as server:
            yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a unix socket in a temporary folder, one per session.

    Skips (with the reason) only where the server binaries or psycopg are absent.
    """
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with running_postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a fresh, empty database on the session's server (dropped after)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1].split("?", 1)[0])


#: The registries the integration tests that matter run on, one parameter each (as optuna
#: parametrises its storages): a DuckDB file in the warehouse folder, and a database on the
#: session's PostgreSQL server with the vectors in a folder of their own.
REGISTRIES = ("duckdb", "postgres")


@pytest.fixture(params=REGISTRIES)
def registry_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """An empty warehouse created by the migrations, once on each registry of REGISTRIES."""
    if request.param == "duckdb":
        wh = migrated_warehouse(tmp_path / "wh")
    else:
        url = request.getfixturevalue("postgres_url")
        vectors = str(tmp_path / "shared-vectors")
        wh = warehouse_from_settings(load_settings(tmp_path / "wh", url, vectors))
        init_warehouse(wh)
    yield wh
    wh.dispose()


def registry_args(wh: Warehouse) -> list[str]:
    """The global CLI options that open ``wh``: its folder, and its registry's URL unless
    that is the folder's own DuckDB file (the vectors root is recorded in the registry)."""
    args = ["--warehouse", str(wh.root)]
    return args if wh.duckdb_path == wh.root / REGISTRY_FILENAME else [*args, "--db", wh.db_url]


def semwh_bin() -> str:
    """The installed `semwh` console script next to this interpreter."""
    candidate = Path(sys.executable).with_name("semwh")
    found = str(candidate) if candidate.exists() else shutil.which("semwh")
    if not found:
        pytest.fail("the semwh console script is not installed (pip install -e .)")
    return found


#: Environment variables read when an interpreter or a library starts, not when a command runs.
READ_AT_START = (
    "PYTHON",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
    "FORCE_COLOR",
    "TERM",
    "LANG",
    "LC_",
    "TZ",
    "HF_",
    "TRANSFORMERS_",
)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a real, separate process and return its code and output.

    The process is forked from :mod:`tests.forkserver` (semwh already imported); ``fresh``, or
    an environment variable that Python or a library reads as it starts (``PYTHON*``, the
    terminal's, the locale's, Hugging Face's), runs the installed console script in a new
    interpreter instead, so that the variable takes effect as it would for a user.
    """
    full_env = {**os.environ, **(env or {})}
    if fresh or any(key.startswith(READ_AT_START) for key in env or {}):
        proc = subprocess.run(
            [semwh_bin(), *args], capture_output=True, text=True, env=full_env, timeout=timeout
        )
    else:
        server = shared_server(Path(tempfile.gettempdir()) / f"semwh-tests-{os.getpid()}")
        child = server.run(*args, env=full_env, timeout=timeout)
        code = child.code if child.code is not None else -signal.SIGKILL
        proc = subprocess.CompletedProcess(["semwh", *args], code, *child.outputs())
        child.out.unlink(missing_ok=True)
        child.err.unlink(missing_ok=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"semwh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def migrated_warehouse(root: Path) -> Warehouse:
    """A new warehouse at ``root``, created by running the migrations."""
    wh = warehouse_from_settings(load_settings(root))
    init_warehouse(wh)
    return wh


def copy_warehouse(template: Path, root: Path) -> Warehouse:
    """A private copy of a template warehouse folder (the folder is self-contained)."""
    shutil.copytree(template, root)
    return warehouse_from_settings(load_settings(root))


def table_names(conn: Any) -> list[str]:
    """The tables of an open DuckDB registry connection (Alembic's own included), by name."""
    rows = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def count_rows(wh: Warehouse, model: type) -> int:
    """Rows of one registry table, by its ORM model."""
    from sqlalchemy import func, select

    with wh.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))
