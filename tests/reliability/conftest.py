"""Shared pieces of the reliability tests: a fork server for killable `semwh` processes
(:mod:`tests.forkserver`), tiny generated inputs, and the checks every crash test applies to
a warehouse. The resumed extraction after its crashes runs the installed console script.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from semwh.config import load_settings
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from tests.conftest import run_cli, table_names
from tests.forkserver import ForkServer


@pytest.fixture(scope="session")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path_factory.mktemp("forks"))
    yield server
    server.close()


def open_wh(root: Path) -> Warehouse:
    return warehouse_from_settings(load_settings(root))


def init_wh(root: Path) -> Warehouse:
    from semwh.warehouse.migrate import init_warehouse

    wh = open_wh(root)
    init_warehouse(wh)
    return wh


def sample_folder(samples_dir: Path, dest: Path, n_concepts: int, per_concept: int) -> Path:
    """A folder of symlinks to real sample photos (read in place): n concepts x k images."""
    by_wnid: dict[str, list[Path]] = {}
    for path in sorted(samples_dir.glob("*.jpg")):
        by_wnid.setdefault(path.name.split("_")[0], []).append(path)
    dest.mkdir(parents=True)
    for wnid in sorted(by_wnid)[:: max(1, len(by_wnid) // n_concepts)][:n_concepts]:
        for path in by_wnid[wnid][:per_concept]:
            (dest / path.name).symlink_to(path)
    return dest


def write_word_file(path: Path, wnids: list[str], dim: int = 16, seed: int = 0) -> Path:
    """A GloVe-format text file with one random vector per concept token, plus a mapping."""
    rng = np.random.default_rng(seed)
    lines = []
    for i, _ in enumerate(wnids):
        values = " ".join(f"{v:.6f}" for v in rng.normal(size=dim))
        lines.append(f"tok{i} {values}")
    lines.append("unused " + " ".join(["0.5"] * dim))
    path.write_text("\n".join(lines) + "\n")
    mapping = path.with_suffix(".mapping.csv")
    mapping.write_text("wnid,tokens\n" + "".join(f"{w},tok{i}\n" for i, w in enumerate(wnids)))
    return mapping


# Columns that legitimately differ between two runs of the same work: surrogate keys (a
# killed transaction may consume sequence values), timestamps, timings, versions, and file
# paths that embed run ids. Everything else must match a reference run exactly.
VOLATILE = {
    "created_at",
    "finished_at",
    "started_at",
    "seconds",
    "images_per_s",
    "duration_s",
    "versions",
    "device",
    "hostname",
    "host",
    "pid",
}


def _keep(table: str, column: str) -> bool:
    if column in VOLATILE or column.endswith("_id") or column == "result_ids":
        return False
    return not (table == "vector_files" and column == "path")


def snapshot(wh: Warehouse) -> dict[str, list[tuple]]:
    """Every registry table (stable columns, as a sorted multiset) and every vector row."""
    assert wh.duckdb_path is not None
    conn = duckdb.connect(str(wh.duckdb_path), read_only=True)
    try:
        tables = [t for t in table_names(conn) if t != "alembic_version"]
        out: dict[str, list[tuple]] = {}
        for table in tables:
            cols = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ? "
                    "ORDER BY column_index",
                    [table],
                ).fetchall()
                if _keep(table, r[0])
            ]
            select = ", ".join(f'"{c}"' for c in cols) or "1"
            out[table] = conn.execute(f"SELECT {select} FROM {table} ORDER BY ALL").fetchall()
        paths = conn.execute("SELECT path FROM vector_files").fetchall()
        files = [wh.vectors_root / r[0] for r in paths]
        rows: list[tuple] = []
        shas = dict(conn.execute("SELECT image_id, sha256 FROM images").fetchall())
        for path in files:
            table = pq.read_table(path)
            for space, concept, image_id, vector in zip(
                *(table.column(c).to_pylist() for c in ("space", "concept", "image_id", "vector")),
                strict=True,
            ):
                rows.append((space, concept, shas.get(image_id), tuple(vector)))
        out["vectors"] = sorted(rows, key=repr)
        return out
    finally:
        conn.close()


def assert_same(got: dict[str, list[tuple]], expected: dict[str, list[tuple]]) -> None:
    assert sorted(got) == sorted(expected)
    for table in expected:
        if got[table] != expected[table]:
            extra = [r for r in got[table] if r not in expected[table]][:3]
            missing = [r for r in expected[table] if r not in got[table]][:3]
            raise AssertionError(
                f"table {table} differs from the reference run: "
                f"{len(got[table])} rows vs {len(expected[table])}; "
                f"unexpected {extra}; missing {missing}"
            )


def check_registered_files(wh: Warehouse) -> int:
    """Every registered vector file exists, reads back whole and matches its sha256 and rows."""
    assert wh.duckdb_path is not None
    conn = duckdb.connect(str(wh.duckdb_path), read_only=True)
    try:
        rows = conn.execute("SELECT path, sha256, n_rows, size_bytes FROM vector_files").fetchall()
    finally:
        conn.close()
    for rel, sha, n_rows, size in rows:
        path = wh.vectors_root / rel
        assert path.is_file(), f"registered file {rel} is missing"
        data = path.read_bytes()
        assert len(data) == size, f"{rel}: size differs from vector_files"
        assert hashlib.sha256(data).hexdigest() == sha, f"{rel}: sha256 differs"
        assert pq.read_table(path).num_rows == n_rows, f"{rel}: row count differs"
    return len(rows)


def tmp_files(wh: Warehouse) -> list[Path]:
    return sorted(wh.tmp_root.glob("*")) if wh.tmp_root.exists() else []


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None):  # noqa: ANN201
    """The installed console script (reference runs and final runs after crashes)."""
    return run_cli(*args, check=check, env=env, fresh=True)


def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# Seconds each reference command took (from fork to exit), keyed by its first two words:
# seeded kill delays are drawn as fractions of these, so they land inside the work.
DURATIONS: dict[str, float] = {}


def finish(forks: ForkServer, root: Path, commands: list[list[str]]) -> None:
    for command in commands:
        child = forks.spawn("--warehouse", str(root), *command)
        started = time.monotonic()  # from the fork: the server's own start-up is not counted
        code = forks.wait(child, timeout=300)
        assert code == 0, f"semwh {' '.join(command)} failed ({code}):\n{child.stderr}"
        DURATIONS.setdefault(" ".join(command[:2]), time.monotonic() - started)


# Shared inputs and uninterrupted reference runs.
EXTRACT = ["extract", "efficientnet_lite0", "--layers", "stem,blocks.8,fc"]
EXTRACT += ["--shard-size", "2", "--batch-size", "2", "--device", "cpu", "--workers", "0"]
SWEEP = ["analyze", "sweep", "--models", "efficientnet_lite0", "--words", "words"]
SWEEP += ["--permutations", "200", "--seed", "7", "--no-random"]
N_CONCEPTS = 4  # 2 images each: 4 shards of 2 for extraction


class Inputs:
    """Generated inputs shared by the module: images (links to samples), words, a space."""

    def __init__(self, root: Path, samples_dir: Path) -> None:
        self.images = sample_folder(samples_dir, root / "images", N_CONCEPTS, 2)
        self.concept_ids = sorted({p.name.split("_")[0] for p in self.images.iterdir()})
        self.words = root / "words.txt"
        self.mapping = write_word_file(self.words, self.concept_ids, dim=12, seed=1)
        rng = np.random.default_rng(2)
        self.space = root / "space.csv"
        rows = [",".join(["wnid", *(f"f{i}" for i in range(5))])]
        rows += [",".join([w, *(f"{v:.5f}" for v in rng.normal(size=5))]) for w in self.concept_ids]
        self.space.write_text("\n".join(rows) + "\n")

    def ingest_commands(self) -> list[list[str]]:
        return [
            ["ingest", "images", str(self.images), "--no-wordnet"],
            ["ingest", "words", "words", str(self.words), "-f", "glove"]
            + ["--mapping", str(self.mapping)],
            ["ingest", "space", "ratings", str(self.space)],
        ]


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("inputs"), samples_dir)


@pytest.fixture(scope="session")
def reference(
    tmp_path_factory: pytest.TempPathFactory, forks: ForkServer, inputs: Inputs
) -> dict[str, Path]:
    """Uninterrupted runs: the warehouse after ingest, after extract and after the sweep."""
    base = tmp_path_factory.mktemp("reference")
    wh = init_wh(base / "ingested")
    finish(forks, wh.root, inputs.ingest_commands())
    shutil.copytree(wh.root, base / "extracted")
    finish(forks, base / "extracted", [EXTRACT])
    shutil.copytree(base / "extracted", base / "swept")
    finish(forks, base / "swept", [SWEEP])
    return {"ingested": wh.root, "extracted": base / "extracted", "swept": base / "swept"}
