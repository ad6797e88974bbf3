"""Resources bounded up front: analysis plans that count permutations and resamples, image
sizes capped before decode, SQL with a time limit and its spill files cleaned, streamed
outputs, and templates without format specs."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from semwh import runs
from semwh.errors import InputError, ResourceError
from semwh.extract.decode import FileBytesDataset
from semwh.extract.preprocess import PRESETS, Preprocessing
from semwh.ingest import ingest_images
from semwh.runs.comparison import plan_comparison
from semwh.runs.difference import diff
from semwh.runs.grid import grid, peak_layer
from semwh.runs.plan import check_specs
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from tests.conftest import copy_warehouse, migrated_warehouse, run_cli
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
        runs.measure(warehouse, LAYER, WORDS, "cka", permutations=10**12)
    # Families refuse before any member runs, naming the option.
    with pytest.raises(ResourceError, match="-n/--permutations"):
        runs.sweep(warehouse, ["toy"], [WORDS], tests=["rsa"], permutations=10**9)
    with pytest.raises(ResourceError, match="-n/--permutations"):
        grid(warehouse, "toy", [WORDS], tests=["rsa"], permutations=10**9)
    with pytest.raises(ResourceError, match="--bootstrap"):
        peak_layer(warehouse, "toy", WORDS, tests=["rsa"], permutations=9, bootstrap=10**12)
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
        diff(warehouse, f"rsa:{rsa.result_id}", f"rsa:{other.result_id}", permutations=10**12)
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
    warehouse: Warehouse, samples_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 373 bytes on disk, 100000 x 1 pixels: resizing its short side to 256 would make
    # 25600000 x 256 pixels (20 GB). Ingest skips it with the reason; the photo goes in.
    folder = tmp_path / "images"
    folder.mkdir()
    line = folder / "n01000001_line_x.png"
    line.write_bytes(_png(100_000, 1, b"\x00" + b"\xff" * 12_500))
    (folder / "n01000001_photo_x.jpg").symlink_to(sorted(samples_dir.glob("*.jpg"))[0])
    report = ingest_images(warehouse, folder, wordnet=False)
    assert report.added == 1
    [(path, reason)] = report.skipped
    assert path == str(line) and "aspect ratio of 100000:1" in reason, reason
    assert "SEMWH_MAX_ASPECT_RATIO" in reason

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
