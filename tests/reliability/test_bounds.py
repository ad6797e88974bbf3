"""Resources bounded up front: analysis plans that count permutations and resamples, image
sizes capped before decode, SQL with a time limit and its spill files cleaned, streamed
outputs, and templates without format specs."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image as PILImage

from semwh import runs
from semwh.errors import ConfigError, InputError, ResourceError
from semwh.extract.decode import FileBytesDataset
from semwh.extract.preprocess import PRESETS, Preprocessing
from semwh.ingest import ingest_images
from semwh.results.output import to_csv, to_json, write_batches
from semwh.runs.comparison import plan_comparison
from semwh.runs.difference import diff
from semwh.runs.grid import grid, peak_layer
from semwh.runs.plan import check_specs
from semwh.text import concept_texts, embed_text_model
from semwh.text.texts import ConceptFields
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.readonly import run_sql
from tests.conftest import copy_warehouse, migrated_warehouse, run_cli, semwh_bin
from tests.integration.test_analyze import build_world
from tests.reliability.test_bad_inputs import _png

pytestmark = pytest.mark.integration

LAYER, WORDS = "toy/block3", "words"


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with a toy model's layers and a word space, built once per module."""
    root = tmp_path_factory.mktemp("world") / "wh"
    build_world(migrated_warehouse(root))
    return root


@pytest.fixture
def world(world_root: Path, tmp_path: Path) -> Warehouse:
    return copy_warehouse(world_root, tmp_path / "wh")


def test_memory_plan_counts_permutations(world: Warehouse) -> None:
    # 10^8 permutations of 14 concepts: the null alone is 800 MB, and its stored copy and
    # the drawn relabellings several GB more. The plan refuses at once, allocating nothing.
    warehouse = world
    before, start = _peak_rss(), time.monotonic()
    for test in ("rsa", "2v2"):
        with pytest.raises(ResourceError, match=r"-n/--permutations.*--memory"):
            runs.compare(warehouse, LAYER, WORDS, test, permutations=10**8, memory=2**31)
    with pytest.raises(ResourceError, match="--bootstrap"):
        runs.compare(warehouse, LAYER, WORDS, "2v2", bootstrap=10**9, memory=2**31)
    with pytest.raises(ResourceError, match="-n/--permutations"):
        runs.measure(warehouse, LAYER, WORDS, "cka", permutations=2 * 10**9)
    # Beyond a registry column, a count is refused before any plan or lookup.
    with pytest.raises(ConfigError, match="permutations must be at most 2147483647"):
        runs.measure(warehouse, LAYER, WORDS, "cka", permutations=10**12)
    # Families refuse before any member runs, naming the option.
    with pytest.raises(ResourceError, match="-n/--permutations"):
        runs.sweep(warehouse, ["toy"], [WORDS], tests=["rsa"], permutations=10**9)
    with pytest.raises(ResourceError, match="-n/--permutations"):
        grid(warehouse, "toy", [WORDS], tests=["rsa"], permutations=10**9)
    with pytest.raises(ResourceError, match="--bootstrap"):
        peak_layer(warehouse, "toy", WORDS, tests=["rsa"], permutations=9, bootstrap=2 * 10**9)
    # A grid reads every cell's null back at once: each cell fits, the family does not.
    options = runs.ComparisonOptions.make("rsa", permutations=10**6, seed=1)
    spaces = load_space(warehouse, LAYER), load_space(warehouse, WORDS)
    spec = plan_comparison(*spaces, options, {})
    half = 500 * 2**20
    check_specs([spec], warehouse.tmp_root, family="grid", memory=half)
    with pytest.raises(ResourceError, match="rest of the grid.*-n/--permutations"):
        held = {"-n/--permutations": 4 * 10**6}
        check_specs([spec] * 4, warehouse.tmp_root, family="grid", held_values=held, memory=half)
    rsa = runs.compare(warehouse, LAYER, WORDS, "rsa", permutations=9, seed=1)
    other = runs.compare(warehouse, "toy/block2", WORDS, "rsa", permutations=9, seed=1)
    with pytest.raises(ResourceError, match="-n/--permutations"):
        diff(warehouse, f"rsa:{rsa.result_id}", f"rsa:{other.result_id}", permutations=2 * 10**9)
    assert time.monotonic() - start < 20
    assert _peak_rss() - before < 300 * 2**20


def test_cli_refuses_a_huge_permutation_count_in_one_line(world: Warehouse) -> None:
    start = time.monotonic()
    proc = run_cli(
        "--warehouse", str(world.root), "analyze", "rsa", "--a", LAYER, "--b", WORDS,
        "-n", "100000000", "--memory", "2G", check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - start < 30
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "-n/--permutations" in error[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_extreme_images_are_skipped_at_ingest_and_refused_before_decode(
    world: Warehouse, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 373 bytes on disk, 100000 x 1 pixels: resizing its short side to 256 would make
    # 25600000 x 256 pixels (20 GB). Ingest skips it with the reason; the photo goes in.
    folder = tmp_path / "images"
    folder.mkdir()
    line = folder / "n01000001_line_x.png"
    line.write_bytes(_png(100_000, 1, b"\x00" + b"\xff" * 12_500))
    (folder / "n01000001_photo_x.jpg").symlink_to(sorted(samples_dir.glob("*.jpg"))[0])
    report = ingest_images(world, folder, wordnet=False)
    assert report.added == 1
    [(path, reason)] = report.skipped
    assert path == str(line) and "aspect ratio of 100000:1" in reason, reason
    assert "SEMWH_MAX_ASPECT_RATIO" in reason
    # A lower limit on another run skips the registered photo again but never drops it: the
    # file is intact, and the limit is this machine's setting.
    monkeypatch.setenv("SEMWH_MAX_IMAGE_PIXELS", "1000")
    again = ingest_images(world, folder, wordnet=False)
    assert not again.removed and len(again.skipped) == 2
    monkeypatch.delenv("SEMWH_MAX_IMAGE_PIXELS")

    # An image already stored (or replaced on disk) is refused from its header at extraction,
    # on the PIL path and on the device-decoding path, before a pixel is decoded.
    prep = Preprocessing(**PRESETS["imagenet"])
    start, before = time.monotonic(), _peak_rss()
    with pytest.raises(InputError, match=r"n01000001_line_x.png: 100000 x 1 pixels"):
        prep.load(line)
    wide = tmp_path / "wide.jpg"
    PILImage.new("RGB", (60_000, 2)).save(wide)
    with pytest.raises(InputError, match=r"wide.jpg: 60000 x 2 pixels"):
        FileBytesDataset([wide], prep)[0]
    # Too many pixels, whatever the shape (the cap is configurable).
    monkeypatch.setenv("SEMWH_MAX_IMAGE_PIXELS", "1000")
    monkeypatch.setenv("SEMWH_MAX_ASPECT_RATIO", "100000")
    with pytest.raises(InputError, match="more than the 1000 pixels.*SEMWH_MAX_IMAGE_PIXELS"):
        prep.load(line)
    # A raised aspect limit still holds the resized image to the pixel limit.
    monkeypatch.setenv("SEMWH_MAX_IMAGE_PIXELS", "200000")
    with pytest.raises(InputError, match="resized to about 256 x 25600000"):
        prep.load(line)
    assert time.monotonic() - start < 5 and _peak_rss() - before < 100 * 2**20
    # Within raised limits an image goes through: 120 x 2 pixels (60:1) resizes to 256 x 15360.
    monkeypatch.setenv("SEMWH_MAX_IMAGE_PIXELS", "4000000")
    narrow = tmp_path / "narrow.png"
    PILImage.new("RGB", (120, 2)).save(narrow)
    assert prep.load(narrow).shape == (3, 224, 224)


SLOW_SQL = "SELECT sum(hash(i)) AS s FROM range(1000000000000) t(i)"


def _spill_folders(wh: Warehouse) -> list[Path]:
    return sorted(wh.tmp_root.glob("sql-spill.*")) if wh.tmp_root.exists() else []


def test_sql_has_a_time_limit_and_spills_into_its_own_folder(
    world: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = world
    start = time.monotonic()
    with pytest.raises(ResourceError, match=r"time limit of 0.5 s.*--timeout"):
        run_sql(warehouse, SLOW_SQL, timeout=0.5)
    monkeypatch.setenv("SEMWH_SQL_TIMEOUT", "0.5")
    with pytest.raises(ResourceError, match="SEMWH_SQL_TIMEOUT"):
        run_sql(warehouse, SLOW_SQL)
    assert time.monotonic() - start < 15
    monkeypatch.setenv("SEMWH_SQL_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="SEMWH_SQL_TIMEOUT"):
        run_sql(warehouse, "SELECT 1")
    monkeypatch.delenv("SEMWH_SQL_TIMEOUT")

    # DuckDB spills into a folder of this statement inside tmp/, removed afterwards; a
    # folder left by a killed process is removed by the next statement.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = warehouse.tmp_root / f"sql-spill.{socket.gethostname()}.{dead.pid}.abc"
    stale.mkdir(parents=True)
    (stale / "duckdb_temp_storage-0.tmp").write_bytes(b"\0" * 1024)
    live = warehouse.tmp_root / f"sql-spill.{socket.gethostname()}.{os.getpid()}.def"
    live.mkdir()
    folder = run_sql(warehouse, "SELECT current_setting('temp_directory') AS t").rows()[0][0]
    assert Path(folder).parent == warehouse.tmp_root and Path(folder).name.startswith("sql-")
    assert not Path(folder).exists() and not stale.exists()
    assert live.exists()  # a live process's folder stays


def test_sql_stops_at_the_first_ctrl_c_and_leaves_no_spill_folder(world: Warehouse) -> None:
    warehouse = world
    proc = subprocess.Popen(
        [semwh_bin(), "--warehouse", str(warehouse.root), "sql", SLOW_SQL, "--timeout", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal, even where this test runs with SIGINT ignored (a background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not _spill_folders(warehouse) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert _spill_folders(warehouse), "the statement never started"
        time.sleep(0.5)  # inside DuckDB by now
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert time.monotonic() - start < 5
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted (Ctrl-C): the command stopped", err
    assert _spill_folders(warehouse) == []


def _watched(batches: list[pa.RecordBatch], partial: Path) -> Iterator[pa.RecordBatch]:
    """The batches, checking before each one is read that the rows of the one before are
    already in the file being written (``partial``: its glob pattern)."""
    size = 0
    for k, batch in enumerate(batches):
        if k:
            [part] = partial.parent.glob(partial.name)
            assert part.stat().st_size > size, f"batch {k - 1} was not written before batch {k}"
            size = part.stat().st_size
        yield batch


def test_csv_and_json_are_written_batch_by_batch(tmp_path: Path) -> None:
    batches = [
        pa.record_batch({"i": pa.array(range(k, k + 2_000)), "x": pa.array([0.5] * 2_000)})
        for k in range(0, 10_000, 2_000)
    ]
    whole = pa.Table.from_batches(batches)
    for fmt, expected in (("csv", to_csv(whole)), ("json", to_json(whole) + "\n")):
        out = tmp_path / f"rows.{fmt}"
        stream = _watched(batches, tmp_path / f".rows.{fmt}.*.tmp")
        assert write_batches(batches[0].schema, stream, fmt, out) == 10_000
        assert out.read_text() == expected
    assert json.loads(to_json(pa.table({"a": pa.array([], pa.int64())}))) == []


@pytest.mark.parametrize("template", ["{lemma!r:>99999999}", "a photo of {lemma:>9}", "{name!s}"])
def test_templates_with_a_conversion_or_format_spec_are_refused(
    world: Warehouse, template: str
) -> None:
    fields = [ConceptFields("n01000001", "cat", "cat", None)]
    with pytest.raises(ConfigError, match="conversion or format spec"):
        concept_texts(fields, [template])
    # `semwh embed` refuses it before it loads a model or reads a concept.
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"conversion or format spec; write the field alone"):
        embed_text_model(world, "st:/no/such/model", templates=["lemma", template])
    assert time.monotonic() - start < 2
    assert concept_texts(fields, ["a photo of a {lemma}"])[1] == [["a photo of a cat"]]
