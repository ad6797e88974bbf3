"""A `semwh extract` killed with SIGKILL resumes to exactly the rows of an uninterrupted run;
a finished run is found again before the model loads, and only for the same request."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import duckdb
import pytest
import torch

from semwh.errors import DuplicateError
from semwh.extract import ExtractionOptions, ExtractionSummary, finished_extraction, run_extraction
from semwh.extract.digests import CACHE_FILENAME
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
                "SELECT space, i.sha256, v.concept, v.image_id IS NULL, vector "
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
        ExtractionOptions(
            "efficientnet_lite0",
            layers="stem,blocks.5,head,fc",
            shard_size=4,
            batch_size=2,
            device="cpu",
            num_workers=0,
        ),
    )
    assert summary.status == "done"
    got, expected = _snapshot(db), _snapshot(clean.root / "registry.duckdb")
    assert got["runs"] == [("done", N_IMAGES, 4)]
    assert got["shards"] == [(0, 4), (1, 4), (2, 4), (3, 2)]
    assert len(got["vectors"]) == 4 * (N_IMAGES + len({f.name.split("_")[0] for f in files}))
    assert len(got["predictions"]) == 5 * N_IMAGES
    for key in expected:
        assert got[key] == expected[key], key


def _without_free_space(summary: ExtractionSummary) -> ExtractionSummary:
    """The summary with the free disk and RAM (which change between calls) left out."""
    return replace(summary, plan=replace(summary.plan, disk_free=None, ram_free=None))


def _old_copy(src: Path, dest: Path) -> Path:
    """A copy of a weights file, last modified a minute ago (its hash may be remembered)."""
    shutil.copyfile(src, dest)
    past = time.time() - 60
    os.utime(dest, (past, past))
    return dest


def test_rerun_of_a_finished_extraction_is_found_before_the_model_loads(
    tmp_path: Path, samples_dir: Path
) -> None:
    from semwh.extract.sources.lite0 import efficientnet_lite0_weights_path

    files = sorted(samples_dir.glob("*.jpg"))[::250][:4]
    wh = new_warehouse(tmp_path / "wh")
    add_sample_images(wh, files)
    weights = _old_copy(efficientnet_lite0_weights_path(), tmp_path / "lite0.pth")
    args = {"weights_file": weights, "layers": "fc,stem", "shard_size": 2, "batch_size": 2}
    args.update(device="cpu", num_workers=0)
    lite0 = partial(ExtractionOptions, "efficientnet_lite0")
    assert finished_extraction(wh, lite0(**args)) is None
    first = run_extraction(wh, lite0(**args))
    assert first.status == "done" and first.layers == ["stem", "fc"]
    cache = wh.root / CACHE_FILENAME
    entry = json.loads(cache.read_text())["files"][str(weights.resolve())]
    assert entry["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    # Found from the registry: the same run, layers in forward order, the probe's plan.
    for layers in ("fc,stem", "stem, fc", ["stem", "fc"]):
        found = finished_extraction(wh, lite0(**{**args, "layers": layers}))
        assert found is not None and found.status == "unchanged"
        assert (found.run_id, found.layers, found.spaces) == (
            first.run_id,
            first.layers,
            first.spaces,
        )
        assert found.plan.layers == first.plan.layers
        assert found.plan.ram_needed == first.plan.ram_needed
        assert (found.plan.n_todo, found.plan.disk_needed, found.shards_skipped) == (0, 0, 2)
    again = run_extraction(wh, lite0(**args))
    assert _without_free_space(again) == _without_free_space(found)

    # Another request is another run.
    changes = [
        {"layers": "stem,head"},
        {"layers": None},
        {"pooling": "flatten"},
        {"shard_size": 4},
        {"precision": "bf16"},
        {"name": "lite0-b"},
        {"weights_file": None},
    ]
    for change in changes:
        assert finished_extraction(wh, lite0(**{**args, **change})) is None

    # A touched file is hashed again (the entry follows it) and is still the same weights.
    past = time.time() - 30
    os.utime(weights, (past, past))
    touched = finished_extraction(wh, lite0(**args))
    assert touched is not None and touched.run_id == first.run_id
    entry = json.loads(cache.read_text())["files"][str(weights.resolve())]
    assert entry["mtime_ns"] == weights.stat().st_mtime_ns

    # Other weights in the same file: not the finished run; the model name refuses them.
    state = torch.load(weights, weights_only=True)
    state["_fc.bias"] = state["_fc.bias"] + 1.0
    torch.save(state, weights)
    os.utime(weights, (past, past))
    assert finished_extraction(wh, lite0(**args)) is None
    with pytest.raises(DuplicateError, match="registered with other weights"):
        run_extraction(wh, lite0(**args))
    other = run_extraction(wh, lite0(**{**args, "name": "lite0-b"}))
    assert other.status == "done" and other.run_id != first.run_id
    assert finished_extraction(wh, lite0(**{**args, "name": "lite0-b"})) is not None

    # A new image changes the image set: the run is not finished for it.
    add_sample_images(wh, sorted(samples_dir.glob("*.jpg"))[5:6])  # a new concept
    assert finished_extraction(wh, lite0(**{**args, "name": "lite0-b"})) is None


def test_cli_rerun_of_a_finished_extraction_says_unchanged(
    tmp_path: Path, samples_dir: Path
) -> None:
    from semwh.extract.sources.lite0 import efficientnet_lite0_weights_path

    wh = new_warehouse(tmp_path / "wh")
    add_sample_images(wh, sorted(samples_dir.glob("*.jpg"))[::500][:2])
    weights = _old_copy(efficientnet_lite0_weights_path(), tmp_path / "lite0.pth")
    args = ["efficientnet_lite0", "--weights-file", str(weights), "--layers", "stem,fc"]
    args += ["--device", "cpu", "--workers", "0"]
    first = run_cli("--warehouse", str(wh.root), "extract", *args)
    assert "run 1 done" in first.stdout
    again = run_cli("--warehouse", str(wh.root), "extract", *args)
    assert "run 1 unchanged; 0 shards (0 images) extracted, 1 already done" in " ".join(
        again.stdout.split()
    )
    assert "stem" in again.stderr and "fc" in again.stderr  # the plan is printed as before
    cache = json.loads((wh.root / CACHE_FILENAME).read_text())["files"]
    assert (
        cache[str(weights.resolve())]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    )
