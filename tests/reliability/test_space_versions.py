"""A new version of a word or external space is swapped in atomically.

Each ingest of a new version is killed (SIGKILL at the fault point inside its one registry
transaction) or fails with an injected ENOSPC (while its new file is written, or inside the
transaction). Afterwards the previous version is still the one in force: the space row is
intact, SQL over ``vectors`` returns the old vectors, and ``sources`` holds no new row. The
rerun without a fault stores the new version (never "unchanged").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from semwh.config import ENV_FAULT
from semwh.vectors import load_space
from semwh.warehouse.models import Source, Space
from tests.reliability.conftest import ForkServer, check_registered_files, init_wh, open_wh

pytestmark = [pytest.mark.integration]

WNIDS = ["n01503061", "n02084071", "n02121808", "n02691156"]
FAULTS = ["space.swapping:kill", "space.swapping:enospc", "vectors.tmp_written:enospc"]


def _space_file(path: Path, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(len(WNIDS), 3)).astype(np.float32)
    lines = ["wnid,f0,f1,f2"] + [
        ",".join([w, *(repr(float(v)) for v in row)]) for w, row in zip(WNIDS, matrix, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return matrix


def _word_file(path: Path, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).normal(size=(len(WNIDS), 3)).astype(np.float32)
    lines = [f"tok{i} " + " ".join(repr(float(v)) for v in row) for i, row in enumerate(matrix)]
    path.write_text("\n".join(lines) + "\n")
    return matrix


def _command(kind: str, tmp: Path, seed: int) -> tuple[list[str], np.ndarray]:
    if kind == "space":
        path = tmp / f"space-{seed}.csv"
        return ["ingest", "space", "ratings", str(path)], _space_file(path, seed)
    path = tmp / f"words-{seed}.txt"
    mapping = tmp / "mapping.csv"
    mapping.write_text("wnid,tokens\n" + "".join(f"{w},tok{i}\n" for i, w in enumerate(WNIDS)))
    args = ["ingest", "words", "ratings", str(path), "-f", "glove", "--mapping", str(mapping)]
    return args, _word_file(path, seed)


def _sql_vectors(forks: ForkServer, root: Path) -> np.ndarray:
    child = forks.run(
        "--warehouse",
        str(root),
        "sql",
        "SELECT concept, vector FROM vectors WHERE space = 'ratings' ORDER BY concept",
        "--format",
        "json",
    )
    assert child.code == 0, child.stderr
    rows = json.loads(child.stdout)
    assert [r["concept"] for r in rows] == WNIDS
    return np.asarray([r["vector"] for r in rows], dtype=np.float32)


@pytest.mark.parametrize("kind", ["space", "words"])
@pytest.mark.parametrize("fault", FAULTS)
def test_a_killed_or_failed_new_version_keeps_the_old_one(
    forks: ForkServer, tmp_path: Path, kind: str, fault: str
) -> None:
    wh = init_wh(tmp_path / "wh")
    root = str(wh.root)
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("".join(f"{w}\n" for w in WNIDS))
    assert forks.run("--warehouse", root, "ingest", "concepts", "--wnids", str(wnids)).code == 0
    first, old = _command(kind, tmp_path, 1)
    child = forks.run("--warehouse", root, *first)
    assert child.code == 0, child.stderr
    with wh.session() as s:
        space_before = s.scalar(select(Space).where(Space.name == "ratings"))
        n_sources = s.scalar(select(func.count()).select_from(Source))

    second, new = _command(kind, tmp_path, 2)
    child = forks.run("--warehouse", root, *second, env={ENV_FAULT: fault})
    if fault.endswith(":kill"):
        assert child.code == -9, child.stderr
    else:
        assert child.code == 1, child.stderr
        lines = child.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in child.stderr, child.stderr

    wh = open_wh(wh.root)
    with wh.session() as s:
        space = s.scalar(select(Space).where(Space.name == "ratings"))
        assert space is not None
        assert space.content_sha256 == space_before.content_sha256
        assert s.scalar(select(func.count()).select_from(Source)) == n_sources
    np.testing.assert_array_equal(load_space(wh, "ratings").matrix.astype(np.float32), old)
    np.testing.assert_array_equal(_sql_vectors(forks, wh.root), old)
    check_registered_files(wh)

    child = forks.run("--warehouse", root, *second)
    assert child.code == 0, child.stderr
    assert "new version" in child.stdout or "version 2" in child.stdout, child.stdout
    np.testing.assert_array_equal(load_space(wh, "ratings").matrix.astype(np.float32), new)
    np.testing.assert_array_equal(_sql_vectors(forks, wh.root), new)
    with wh.session() as s:
        assert s.scalar(select(func.count()).select_from(Source)) == n_sources + 1
