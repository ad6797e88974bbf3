"""A `semwh extract` killed with SIGKILL resumes to exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from semwh.extract import run_extraction
from tests.conftest import run_cli, semwh_bin
from tests.integration.test_extract import add_sample_images, new_warehouse

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARGS = ["efficientnet_lite0", "--layers", "stem,blocks.5,head,fc", "--shard-size", "4"]
ARGS += ["--batch-size", "2", "--device", "cpu", "--workers", "0"]
N_IMAGES = 14  # 4 shards, the last one short


def _count_shards(db: Path) -> int | None:
    """Shards registered so far, read like `semwh sql` does; None while the writer holds it."""
    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return None
    try:
        return conn.execute("SELECT count(*) FROM extraction_shards").fetchone()[0]
    finally:
        conn.close()


def _snapshot(db: Path) -> dict[str, list[tuple]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        files = [r[0] for r in conn.execute("SELECT path FROM vector_files").fetchall()]
        root = db.parent / "vectors"
        listing = "[" + ", ".join(f"'{root / f}'" for f in files) + "]"
        return {
            "vectors": conn.execute(
                "SELECT space, i.sha256, v.wnid, v.image_id IS NULL, vector "
                f"FROM read_parquet({listing}) v LEFT JOIN images i USING (image_id) "
                "ORDER BY ALL"
            ).fetchall(),
            "predictions": conn.execute(
                "SELECT model, i.sha256, rank, p.wnid, class_index, probability "
                "FROM predictions p JOIN images i USING (image_id) ORDER BY ALL"
            ).fetchall(),
            "shards": conn.execute(
                "SELECT shard_index, n_images FROM extraction_shards ORDER BY ALL"
            ).fetchall(),
            "files": conn.execute(
                "SELECT kind, n_rows, count(*) FROM vector_files GROUP BY ALL ORDER BY ALL"
            ).fetchall(),
            "spaces": conn.execute(
                "SELECT name, depth_index, relative_depth, dim, n_concepts, content_sha256 "
                "FROM spaces ORDER BY ALL"
            ).fetchall(),
            "runs": conn.execute(
                "SELECT status, n_images, n_shards FROM extraction_runs"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_killed_extraction_resumes_to_the_uninterrupted_rows(
    tmp_path: Path, samples_dir: Path
) -> None:
    files = sorted(samples_dir.glob("*.jpg"))[:: 1000 // N_IMAGES][:N_IMAGES]
    killed = new_warehouse(tmp_path / "killed")
    add_sample_images(killed, files)
    db = killed.root / "registry.duckdb"

    proc = subprocess.Popen(
        [semwh_bin(), "--warehouse", str(killed.root), "extract", *ARGS, "--shard-pause", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"semwh extract exited early ({proc.returncode}): {proc.stderr.read()}")
            count = _count_shards(db)
            if count:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no shard was registered within 120 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = _snapshot(db)
    assert partial["runs"] == [("running", N_IMAGES, 4)]
    assert len(partial["shards"]) == 1
    # A temporary file left by a killed writer is cleaned at the next start.
    orphan = killed.tmp_root / "0123456789abcdef.parquet.tmp"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half a parquet file")

    resumed = run_cli("--warehouse", str(killed.root), "extract", *ARGS)
    assert "3 shards (10 images) extracted, 1 already done" in " ".join(resumed.stdout.split())
    assert not orphan.exists()

    clean = new_warehouse(tmp_path / "clean")
    add_sample_images(clean, files)
    summary = run_extraction(
        clean,
        "efficientnet_lite0",
        layers="stem,blocks.5,head,fc",
        shard_size=4,
        batch_size=2,
        device="cpu",
        num_workers=0,
    )
    assert summary.status == "done"
    got, expected = _snapshot(db), _snapshot(clean.root / "registry.duckdb")
    assert got["runs"] == [("done", N_IMAGES, 4)]
    assert got["shards"] == [(0, 4), (1, 4), (2, 4), (3, 2)]
    assert len(got["vectors"]) == 4 * (N_IMAGES + len({f.name.split("_")[0] for f in files}))
    assert len(got["predictions"]) == 5 * N_IMAGES
    for key in expected:
        assert got[key] == expected[key], key
