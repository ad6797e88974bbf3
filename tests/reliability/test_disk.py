"""A full disk or a read-only warehouse: a specific error, no corruption, work resumable.

A real full disk cannot be made here, so ``SEMWH_FAULT`` makes the vector writer fail with
ENOSPC or EROFS at its N-th file; a real read-only warehouse is a read-only bind mount (root
only), skipped where mounting is not allowed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from semwh.config import ENV_FAULT
from semwh.errors import ConfigError
from semwh.testing.faults import Fault, parse_faults
from tests.reliability.conftest import (
    EXTRACT,
    ForkServer,
    Inputs,
    assert_same,
    check_registered_files,
    init_wh,
    open_wh,
    snapshot,
    tmp_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_fault_specs_parse_and_reject_typos() -> None:
    assert parse_faults("vectors.renamed:kill@3, vectors.tmp_written:pause=0.5") == [
        Fault("vectors.renamed", "kill", 3),
        Fault("vectors.tmp_written", "pause", 1, 0.5),
    ]
    assert parse_faults(None) == []
    with pytest.raises(ConfigError, match="POINT:ACTION"):
        parse_faults("vectors.renmed:kill")
    with pytest.raises(ConfigError, match="numbers"):
        parse_faults("vectors.renamed:kill@x")


def test_full_disk_during_extraction_is_reported_and_resumable(
    forks: ForkServer, reference: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "wh"
    shutil.copytree(reference["ingested"], root)
    wh = open_wh(root)
    before = snapshot(wh)
    # The 5th file is the second layer of the second shard: the first shard is registered.
    child = forks.run(
        "--warehouse", str(root), *EXTRACT, env={ENV_FAULT: "vectors.tmp_written:enospc@5"}
    )
    assert child.code == 1
    line = _error_line(child.stderr)
    assert "no space left on device while writing" in line and str(root / "vectors") in line
    check_registered_files(wh)
    partial = snapshot(wh)
    assert len(partial["extraction_shards"]) == 1 and partial["images"] == before["images"]
    assert tmp_files(wh) == []
    child = forks.run("--warehouse", str(root), *EXTRACT)
    assert child.code == 0, child.stderr
    assert_same(snapshot(wh), snapshot(open_wh(reference["extracted"])))


def _ingested(forks: ForkServer, inputs: Inputs, root: Path):  # noqa: ANN202
    wh = init_wh(root)
    child = forks.run("--warehouse", str(wh.root), *inputs.ingest_commands()[0])
    assert child.code == 0, child.stderr
    return wh


FAILURES = (
    ("vectors.tmp_written:enospc", "no space left on device while writing"),
    ("vectors.tmp_written:erofs", "not writable (Read-only file system) while writing"),
)


def test_full_disk_or_read_only_during_ingest_is_reported_and_resumable(
    forks: ForkServer, inputs: Inputs, tmp_path: Path
) -> None:
    wh = _ingested(forks, inputs, tmp_path / "wh")
    words = inputs.ingest_commands()[1]
    for fault, words_in_error in FAILURES:
        child = forks.run("--warehouse", str(wh.root), *words, env={ENV_FAULT: fault})
        assert child.code == 1
        line = _error_line(child.stderr)
        assert words_in_error in line and str(wh.vectors_root) in line, line
        assert check_registered_files(wh) == 0
        assert tmp_files(wh) == []
    child = forks.run("--warehouse", str(wh.root), *words)
    assert child.code == 0, child.stderr
    clean = _ingested(forks, inputs, tmp_path / "clean")
    assert forks.run("--warehouse", str(clean.root), *words).code == 0
    assert_same(snapshot(wh), snapshot(clean))


def test_a_failed_word_ingest_stores_nothing(
    forks: ForkServer, inputs: Inputs, tmp_path: Path
) -> None:
    wh = _ingested(forks, inputs, tmp_path / "wh")
    before = snapshot(wh)
    child = forks.run(
        "--warehouse", str(wh.root), *inputs.ingest_commands()[1], env={ENV_FAULT: FAILURES[0][0]}
    )
    assert child.code == 1
    assert snapshot(wh) == before


def test_read_only_mounted_warehouse(forks: ForkServer, inputs: Inputs, tmp_path: Path) -> None:
    wh = init_wh(tmp_path / "wh")
    forks.run("--warehouse", str(wh.root), *inputs.ingest_commands()[0])
    before = snapshot(wh)
    mount = tmp_path / "ro"
    mount.mkdir()
    bind = subprocess.run(["mount", "--bind", str(wh.root), str(mount)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({bind.stderr.decode().strip()}); needs root")
    try:
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.decode().strip()}")
        # Reads work on a read-only warehouse ...
        child = forks.run("--warehouse", str(mount), "sql", "SELECT count(*) FROM images")
        assert child.code == 0, child.stderr
        # ... and a write fails with one clear line.
        child = forks.run("--warehouse", str(mount), *inputs.ingest_commands()[2])
        assert child.code == 1
        line = _error_line(child.stderr)
        assert "read-only" in line.lower() or "not writable" in line, line
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    assert snapshot(wh) == before
    check_registered_files(wh)
