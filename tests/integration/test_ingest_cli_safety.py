"""The installed CLI on hostile inputs: one error line (exit 1), no hang, files untouched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

WNIDS = ["n01503061", "n02084071", "n02121808"]


def _one_error_line(proc) -> str:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    wh = tmp_path / "wh"
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("".join(f"{w}\n" for w in WNIDS))
    run_cli("--warehouse", str(wh), "init")
    run_cli("--warehouse", str(wh), "ingest", "concepts", "--wnids", str(wnids), "--no-wordnet")
    return wh


def test_hostile_space_files_are_one_line(root: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    proc = run_cli(
        "--warehouse", str(root), "ingest", "space", "s", str(fifo), check=False, timeout=60
    )
    assert "named pipe" in _one_error_line(proc)
    big = tmp_path / "big.csv"
    big.write_text("wnid,vector\n" + f'{WNIDS[0]},"{" ".join(["1.0"] * 40000)}"\n')
    proc = run_cli("--warehouse", str(root), "ingest", "space", "s", str(big), check=False)
    assert "big.csv line" in _one_error_line(proc)
    proc = run_cli("--warehouse", str(root), "ingest", "space", "a/b", str(big), check=False)
    assert "is not valid" in _one_error_line(proc)
    proc = run_cli(
        "--warehouse",
        str(root),
        "sql",
        "SELECT count(*) AS n FROM sources WHERE kind = 'space'",
        "--format",
        "csv",
    )
    assert proc.stdout.split() == ["n", "0"]


def test_a_fifo_in_an_image_folder_does_not_hang(root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(folder / f"{WNIDS[0]}_1.jpg")
    Image.new("RGB", (8, 8), (200, 10, 10)).save(folder / f"{WNIDS[1]}_2.jpg")
    proc = run_cli(
        "--warehouse",
        str(root),
        "ingest",
        "images",
        str(folder),
        "--no-wordnet",
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "named pipe" in proc.stdout + proc.stderr


def test_init_refuses_another_programs_duckdb_file(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    db = folder / "registry.duckdb"
    conn = duckdb.connect(str(db))
    conn.execute("CREATE TABLE concepts (id INTEGER, label VARCHAR)")
    conn.execute("INSERT INTO concepts VALUES (1, 'theirs')")
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    proc = run_cli("--warehouse", str(folder), "init", check=False)
    assert "another program (concepts)" in _one_error_line(proc)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert {p.name for p in folder.iterdir()} <= {"registry.duckdb", "vectors"}
