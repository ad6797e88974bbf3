"""A warehouse whose vectors live in an object store (S3 over HTTP) behaves like a folder one.

The registry stays a local DuckDB file; the vectors root is ``s3://bucket/prefix`` on a local
S3-compatible server (its own process, see tests/s3server.py), reached through pyarrow's S3
client. The same photos and model go into a folder warehouse and an object-store warehouse,
and every stored number must agree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from semwh.errors import WarehouseError
from semwh.extract import ExtractionOptions, run_extraction
from semwh.runs import sweep
from semwh.vectors import load_space, save_space
from semwh.warehouse.layout import Warehouse, record_vectors_location
from semwh.warehouse.migrate import open_warehouse
from semwh.warehouse.models import VectorFile, WarehouseSetting
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.integration.realdata import (
    N_CONCEPTS,
    PER_CONCEPT,
    glove_space,
    image_rows,
    new_warehouse,
    sample_files,
)
from tests.s3server import S3Server

pytestmark = pytest.mark.integration

MODEL = "efficientnet_lite0"
LAYERS = "blocks.2,head"
EXTRACT = {"layers": LAYERS, "batch_size": 4, "shard_size": 8, "device": "cpu", "num_workers": 0}
SWEEP = {"tests": ("2v2", "rsa"), "permutations": 50, "seed": 11, "include_random": False}
BUCKET = "lab-vectors"


@pytest.fixture(scope="module")
def files(samples_dir: Path) -> list[Path]:
    return sample_files(samples_dir)


@pytest.fixture(scope="module")
def store(s3_server: S3Server) -> S3Server:
    s3_server.create_bucket(BUCKET)
    return s3_server


def extracted(root: Path, files: list[Path], vectors: str | None) -> Warehouse:
    wh = new_warehouse(root, files, vectors=vectors)
    summary = run_extraction(wh, ExtractionOptions(MODEL, **EXTRACT))
    assert summary.status == "done" and summary.images == N_CONCEPTS * PER_CONCEPT
    glove_space(wh, files)
    return wh


@pytest.fixture(scope="module")
def folder_wh(tmp_path_factory: pytest.TempPathFactory, files: list[Path]) -> Warehouse:
    return extracted(tmp_path_factory.mktemp("folder") / "wh", files, None)


@pytest.fixture(scope="module")
def s3_wh(
    tmp_path_factory: pytest.TempPathFactory, files: list[Path], store: S3Server
) -> Warehouse:
    return extracted(tmp_path_factory.mktemp("s3") / "wh", files, store.uri(BUCKET, "main/vectors"))


def registered(wh: Warehouse) -> dict[str, tuple[int, str]]:
    with wh.session() as session:
        rows = session.execute(select(VectorFile.path, VectorFile.size_bytes, VectorFile.sha256))
        return {path: (size, sha) for path, size, sha in rows}


def test_vectors_go_to_the_store_and_match_the_folder_warehouse(
    folder_wh: Warehouse, s3_wh: Warehouse, store: S3Server
) -> None:
    files = registered(s3_wh)
    # Every registered file is an object of exactly the registered size and hash; nothing
    # else was uploaded, and nothing went to the warehouse folder.
    objects = store.objects(BUCKET, "main/vectors")
    assert objects == {rel: size for rel, (size, _) in files.items()}
    fs = store.filesystem()
    for rel, (_, sha) in files.items():
        with fs.open_input_stream(f"{BUCKET}/main/vectors/{rel}") as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == sha
    assert not any((s3_wh.root / "vectors").rglob("*.parquet"))
    # The same relative layout as the folder warehouse, and the same rows, bit for bit.
    assert sorted(files) == sorted(registered(folder_wh))
    for layer in LAYERS.split(","):
        ids_s3, wnids_s3, vec_s3 = image_rows(s3_wh, f"{MODEL}/{layer}")
        ids_f, wnids_f, vec_f = image_rows(folder_wh, f"{MODEL}/{layer}")
        assert ids_s3.tolist() == ids_f.tolist() and wnids_s3 == wnids_f
        assert np.array_equal(vec_s3, vec_f)
        a, b = load_space(s3_wh, f"{MODEL}/{layer}"), load_space(folder_wh, f"{MODEL}/{layer}")
        assert a.concept_ids == b.concept_ids and np.array_equal(a.matrix, b.matrix)
    # Provenance travels in the Parquet metadata of the object, as in a file.
    rel = next(r for r in files if "kind=images" in r)
    meta = pq.read_schema(f"{BUCKET}/main/vectors/{rel}", filesystem=fs).metadata
    assert json.loads(meta[b"semwh"])["space"].startswith(f"{MODEL}/")


def test_the_root_is_recorded_so_other_processes_find_it(s3_wh: Warehouse, store: S3Server):
    with s3_wh.session() as session:
        recorded = session.scalar(select(WarehouseSetting.value))
    assert recorded == store.uri(BUCKET, "main/vectors")
    # A process told nothing but the warehouse folder reads the vectors from the store.
    reopened = open_warehouse(s3_wh.root)
    assert reopened.vectors.location == recorded and not reopened.vectors.is_local
    assert load_space(reopened, "glove").concept_ids == load_space(s3_wh, "glove").concept_ids
    out = run_cli("--warehouse", str(s3_wh.root), "init").stdout
    assert "up to date" in out and f"vectors root: {recorded}" in out


def test_sql_vectors_view_reads_the_store(folder_wh: Warehouse, s3_wh: Warehouse) -> None:
    sql = (
        "SELECT space, count(*) AS n, count(image_id) AS images, "
        "round(sum(list_sum(vector)), 3) AS total FROM vectors GROUP BY space ORDER BY space"
    )
    got, want = run_sql(s3_wh, sql).rows(), run_sql(folder_wh, sql).rows()
    assert got == want
    n_images = N_CONCEPTS * PER_CONCEPT
    assert [r[:3] for r in got if r[0] == f"{MODEL}/head"] == [(f"{MODEL}/head", 30, n_images)]
    # The same through the CLI in a new process (credentials from its environment).
    proc = run_cli("--warehouse", str(s3_wh.root), "sql", "SELECT count(*) FROM vectors")
    assert (
        str(2 * (n_images + N_CONCEPTS) + len(load_space(s3_wh, "glove").concept_ids))
        in proc.stdout
    )


def test_sweep_on_the_store_stores_the_folder_numbers(
    folder_wh: Warehouse, s3_wh: Warehouse
) -> None:
    def numbers(wh: Warehouse) -> list[tuple]:
        result = sweep(wh, [MODEL], ["glove"], force=True, **SWEEP)
        assert result.computed == 4
        return sorted(
            (r.space_a, r.space_b, "rsa" if hasattr(r, "rho") else "2v2",
             getattr(r, "rho", None) or getattr(r, "accuracy", None), r.p_value, r.seed)
            for r in result.rows
        )  # fmt: skip

    assert numbers(s3_wh) == numbers(folder_wh)


def test_killed_extraction_on_the_store_resumes_to_the_same_rows(
    tmp_path: Path, files: list[Path], folder_wh: Warehouse, store: S3Server
) -> None:
    uri = store.uri(BUCKET, "killed/vectors")
    wh = new_warehouse(tmp_path / "wh", files, vectors=uri)
    args = ["--warehouse", str(wh.root), "extract", MODEL, "--layers", LAYERS]
    args += ["--batch-size", "4", "--shard-size", "8", "--device", "cpu", "--workers", "0"]
    # Killed right after its third object is uploaded, before the registry knows of it.
    proc = run_cli(*args, env={"SEMWH_FAULT": "vectors.renamed:kill@3"}, check=False)
    assert proc.returncode == -9, proc.stderr
    stored = registered(wh)
    uploaded = store.objects(BUCKET, "killed/vectors")
    assert len(stored) == 2 and set(stored) < set(uploaded)  # one orphan object
    # Readers see only registered files: the orphan is invisible to SQL.
    assert run_sql(wh, "SELECT count(*) FROM vectors").rows() == [(2 * 8,)]
    run_cli(*args)
    for layer in LAYERS.split(","):
        ids, wnids, vec = image_rows(wh, f"{MODEL}/{layer}")
        ids_f, wnids_f, vec_f = image_rows(folder_wh, f"{MODEL}/{layer}")
        assert wnids == wnids_f and len(ids) == len(ids_f) and np.array_equal(vec, vec_f)
    assert set(registered(wh)) == set(store.objects(BUCKET, "killed/vectors"))


def test_init_refuses_to_move_registered_vectors(s3_wh: Warehouse, tmp_path: Path) -> None:
    proc = run_cli(
        "--warehouse", str(s3_wh.root), "--vectors", str(tmp_path / "elsewhere"), "init",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot switch to" in proc.stderr and "vector files" in proc.stderr
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())


def test_unreachable_or_unknown_store_changes_nothing(tmp_path: Path, store: S3Server) -> None:
    closed = f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    for location, words in [
        (closed, "cannot reach the vectors root"),
        ("ftp://host/vectors", "not a folder or a storage URI"),
        (store.uri("no-such-bucket", "v"), "cannot reach the vectors root"),
    ]:
        root = tmp_path / "wh"
        proc = run_cli("--warehouse", str(root), "--vectors", location, "init", check=False)
        assert proc.returncode == 1 and words in proc.stderr, proc.stderr
        assert not (root / "registry.duckdb").exists()


def test_a_folder_root_outside_the_warehouse(tmp_path: Path) -> None:
    """A shared folder as the vectors root: files and temporary files stay on it."""
    shared = tmp_path / "shared" / "vectors"
    run_cli("--warehouse", str(tmp_path / "wh"), "--vectors", str(shared), "init")
    wh = open_warehouse(tmp_path / "wh")
    assert wh.vectors.location == str(shared) and wh.vectors.tmp_dir == shared / "_tmp"
    wnids = [f"n0000000{i}" for i in range(4)]
    save_space(wh, "toy", "word", wnids, np.eye(4))
    assert list(shared.rglob("*.parquet")) and not (tmp_path / "wh" / "vectors").exists()
    assert run_sql(wh, "SELECT count(*) FROM vectors").rows() == [(4,)]
    with pytest.raises(WarehouseError, match="cannot switch"):
        other = open_warehouse(tmp_path / "wh", vectors=str(tmp_path / "other"))
        record_vectors_location(other)


def test_an_unreachable_store_fails_only_queries_of_vectors(s3_wh: Warehouse) -> None:
    closed = (
        f"s3://{BUCKET}/main/vectors?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    )
    args = ["--warehouse", str(s3_wh.root), "--vectors", closed, "sql"]
    ok = run_cli(*args, "SELECT count(*) AS n FROM spaces")
    assert "│ 3 │" in ok.stdout  # two layer spaces and glove: the registry is readable
    failed = run_cli(*args, "SELECT count(*) FROM vectors", check=False)
    assert failed.returncode == 1
    assert "the vectors root s3://" in failed.stderr and "cannot be reached" in failed.stderr
