"""Resources bounded up front: analysis plans that count permutations and resamples, image
sizes capped before decode, SQL with a time limit and its spill files cleaned, streamed
outputs, and templates without format specs."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from semwh import runs
from semwh.errors import ResourceError
from semwh.runs.comparison import plan_comparison
from semwh.runs.difference import diff
from semwh.runs.grid import grid, peak_layer
from semwh.runs.plan import check_specs
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from tests.conftest import copy_warehouse, migrated_warehouse, run_cli
from tests.integration.test_analyze import build_world

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
