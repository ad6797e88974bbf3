"""The vectors root on a folder: atomic writes, reads, hashes, temporary files, locations."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semwh.errors import ConfigError, NotFoundError, WarehouseError
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.storage import INNER_TMP_DIRNAME, TMP_SUFFIX, VectorsRoot, tmp_name


def parquet_bytes(n: int = 3) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"wnid": [f"n{i:08d}" for i in range(n)], "x": list(range(n))}), sink)
    return sink.getvalue()


def test_a_folder_location_resolves_to_an_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = VectorsRoot.open("rel/vectors")
    assert root.is_local and root.location == str(tmp_path / "rel" / "vectors")
    assert root.tmp_dir == tmp_path / "rel" / "vectors" / INNER_TMP_DIRNAME
    assert VectorsRoot.open(f"file://{tmp_path}/v").location == str(tmp_path / "v")
    assert root.show("kind=x/a.parquet") == str(tmp_path / "rel/vectors/kind=x/a.parquet")


def test_unknown_schemes_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'ftp://host/v' is not a folder or a storage URI"):
        VectorsRoot.open("ftp://host/v")


def test_s3_timeouts_are_read_from_the_uri() -> None:
    uri = "s3://bucket/wh?region=us-east-1&scheme=http&endpoint_override=127.0.0.1:9"
    root = VectorsRoot.open(f"{uri}&request_timeout=45&connect_timeout=4")
    options = root.fs.__reduce__()[1][0]
    assert (options["request_timeout"], options["connect_timeout"]) == (45.0, 4.0)
    assert options["endpoint_override"] == "127.0.0.1:9" and options["region"] == "us-east-1"
    assert root.location.endswith("&request_timeout=45&connect_timeout=4")
    assert root.show("a.parquet") == "s3://bucket/wh/a.parquet" and not root.is_local
    assert pickle.loads(pickle.dumps(root)).fs.__reduce__()[1][0]["request_timeout"] == 45.0
    with pytest.raises(ConfigError, match="timeouts are seconds"):
        VectorsRoot.open(f"{uri}&request_timeout=soon")
    with pytest.raises(ConfigError, match="option of s3:// URIs only"):
        VectorsRoot.open("gs://bucket/wh?request_timeout=5")


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    root = VectorsRoot.open(tmp_path / "v")
    root.ensure()
    data = parquet_bytes()
    root.write("kind=x/part/a.parquet", data)
    path = tmp_path / "v" / "kind=x" / "part" / "a.parquet"
    assert path.read_bytes() == data.to_pybytes()
    assert root.exists(["kind=x/part/a.parquet", "nope.parquet"]) == [True, False]
    assert root.size("kind=x/part/a.parquet") == data.size
    assert root.sha256("kind=x/part/a.parquet") == hashlib.sha256(path.read_bytes()).hexdigest()
    assert root.read_table("kind=x/part/a.parquet", columns=["x"]).column("x").to_pylist() == [
        0,
        1,
        2,
    ]
    assert list((tmp_path / "v" / INNER_TMP_DIRNAME).iterdir()) == []
    # Overwriting replaces the file whole.
    root.write("kind=x/part/a.parquet", parquet_bytes(5))
    assert root.read_table("kind=x/part/a.parquet").num_rows == 5
    root.delete("kind=x/part/a.parquet")
    root.delete("kind=x/part/a.parquet")  # already gone: no error
    assert root.exists(["kind=x/part/a.parquet"]) == [False]


def test_missing_files_name_the_file(tmp_path: Path) -> None:
    root = VectorsRoot.open(tmp_path / "v")
    with pytest.raises(NotFoundError, match=r"v/gone\.parquet is missing"):
        root.read_table("gone.parquet")
    with pytest.raises(NotFoundError, match="gone.parquet"):
        root.size("gone.parquet")


def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v").write_text("not a folder")
    with pytest.raises(WarehouseError, match="is a file|cannot reach"):
        VectorsRoot.open(tmp_path / "v").ensure()


def test_a_read_only_root_names_the_file(tmp_path: Path) -> None:
    root = VectorsRoot.open(tmp_path / "v")
    root.ensure()
    os.chmod(tmp_path / "v", 0o500)
    try:
        if os.access(tmp_path / "v", os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop this process writing")
        with pytest.raises(WarehouseError, match=r"not writable .* while writing .*a\.parquet"):
            root.write("a.parquet", parquet_bytes())
    finally:
        os.chmod(tmp_path / "v", 0o700)


def test_orphaned_temporary_files_of_dead_writers_only_are_removed(tmp_path: Path) -> None:
    root = VectorsRoot.open(tmp_path / "v")
    assert root.tmp_dir is not None
    root.tmp_dir.mkdir(parents=True)
    host = socket.gethostname()
    dead = root.tmp_dir / f"{host}.999999999.abc{TMP_SUFFIX}"  # no such pid
    alive = root.tmp_dir / f"{host}.{os.getpid()}.abc{TMP_SUFFIX}"
    other_host = root.tmp_dir / f"elsewhere.1.abc{TMP_SUFFIX}"
    for path in (dead, alive, other_host):
        path.write_bytes(b"partial")
    assert root.remove_orphaned_tmp() == 1
    assert not dead.exists() and alive.exists() and other_host.exists()
    assert root.clean_tmp() == 2 and not any(root.tmp_dir.iterdir())
    assert tmp_name().startswith(f"{host}.{os.getpid()}.") and tmp_name() != tmp_name()


def test_a_root_pickles_by_location(tmp_path: Path) -> None:
    """Ray ships a root to other processes: it arrives as the same location, working."""
    root = VectorsRoot.open(tmp_path / "v", tmp_dir=tmp_path / "tmp")
    root.write("a.parquet", parquet_bytes())
    again = pickle.loads(pickle.dumps(root))
    assert again == root and again.tmp_dir == tmp_path / "tmp"
    assert again.read_table("a.parquet").num_rows == 3


def test_free_bytes_of_a_root_not_yet_created(tmp_path: Path) -> None:
    root = VectorsRoot.open(tmp_path / "not" / "yet")
    free = root.free_bytes()
    assert free is not None and free > 0


def test_the_default_root_keeps_tmp_beside_vectors(warehouse: Warehouse) -> None:
    root = warehouse.vectors
    assert root.location == str(warehouse.root / "vectors")
    assert root.tmp_dir == warehouse.root / "tmp" == warehouse.tmp_root
    assert warehouse.vectors_root == warehouse.root / "vectors"
    # Naming the default folder explicitly is the same root.
    same = warehouse.open_vectors(str(warehouse.root / "vectors"))
    assert same.tmp_dir == warehouse.root / "tmp"
