# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""The worked example of docs/extending.md: a measure installed as a plugin through the
``semwh.measures`` entry point runs on every path (single, sweep, grid, peak, difference,
verify, named query, report, CLI) with no change to semwh."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from semwh import measures, runs
from semwh.measures.spec import ComparisonSpec
from semwh.warehouse.layout import Warehouse
from tests.conftest import run_cli
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    template,
    warehouse,
    world,
)

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def install(root: Path) -> Path:
    """A real installed distribution's metadata declaring the example's entry point."""
    info = root / "semwh_procrustes-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: semwh-procrustes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[semwh.measures]\nprocrustes = semwh_procrustes:Procrustes\n"
    )
    return root


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The example installed in this process (and the environment for a CLI process)."""
    site = install(tmp_path / "site")
    paths = [str(EXAMPLES), str(site)]
    sys.path[:0] = paths
    importlib.invalidate_caches()
    measures.reload()
    try:
        yield {"PYTHONPATH": ":".join(paths)}
    finally:
        for path in paths:
            sys.path.remove(path)
        measures.unregister("procrustes")
        sys.modules.pop("semwh_procrustes", None)


def reference(x: np.ndarray, y: np.ndarray, centre: bool = True) -> float:
    """Slow and plain: the best orthogonal map of B (zero-padded) onto A, then trace."""
    x, y = (m - m.mean(axis=0) if centre else m for m in (x, y))
    x, y = x / np.sqrt((x**2).sum()), y / np.sqrt((y**2).sum())
    width = max(x.shape[1], y.shape[1])
    xp = np.hstack([x, np.zeros((len(x), width - x.shape[1]))])
    yp = np.hstack([y, np.zeros((len(y), width - y.shape[1]))])
    rotation, _ = orthogonal_procrustes(yp, xp)
    return float(np.trace(rotation.T @ yp.T @ xp))


def spec_of(x: np.ndarray, y: np.ndarray, **options: object) -> ComparisonSpec:
    opts = measures.get("procrustes").make_options(**options)
    n = len(x)
    return ComparisonSpec("a", "b", tuple(f"c{i:03d}" for i in range(n)), x, y, opts, {}, "none")


def test_statistic_and_weights_equal_the_plain_reference(plugin) -> None:
    procrustes = measures.get("procrustes")
    rng = np.random.default_rng(0)
    for centre in (True, False):
        for widths in ((5, 3), (3, 7), (6, 6)):
            x = rng.normal(size=(9, widths[0]))
            y = rng.normal(size=(9, widths[1]))
            spec = spec_of(x, y, centre=centre)
            assert abs(procrustes.value(spec) - reference(x, y, centre)) < 1e-9
            counts = rng.integers(0, 3, size=9)
            counts[0] = 1
            rows = np.repeat(np.arange(9), counts)
            expected = reference(x[rows], y[rows], centre)
            assert abs(procrustes.weighted(spec)(counts.astype(float)) - expected) < 1e-9
    # A rotation of A is a perfect match; an option of the wrong type is named.
    x = rng.normal(size=(8, 4))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert abs(procrustes.value(spec_of(x, 3 * x @ q)) - 1) < 1e-12
    with pytest.raises(Exception, match="procrustes option centre must be true or false"):
        procrustes.make_options(centre="maybe")
    with pytest.raises(Exception, match="procrustes has no option scale"):
        procrustes.make_options(scale=1)


def test_permutation_test_rejects_at_about_alpha_under_the_null(plugin) -> None:
    procrustes = measures.get("procrustes")
    rng = np.random.default_rng(1)
    rejected = 0
    n_sim = 300
    for sim in range(n_sim):
        spec = spec_of(rng.normal(size=(10, 4)), rng.normal(size=(10, 3)), permutations=39)
        spec = replace(spec, options=replace(spec.options, seed=sim))
        rejected += procrustes.statistic(spec)["p_value"] <= 0.05
    # 300 draws at 0.05: a standard error of 0.0126.
    assert 0.015 <= rejected / n_sim <= 0.09


def test_the_plugin_runs_on_every_path(plugin, warehouse: Warehouse, world, tmp_path) -> None:
    from semwh.results.named import run_query
    from semwh.results.report import build_report
    from semwh.runs.difference import diff
    from semwh.runs.grid import grid, peak_layer
    from semwh.runs.verify import verify

    layers = world["layers"]["toy"]
    deep, shallow = layers[3], layers[0]
    single = runs.compare_measure(warehouse, deep, "words", "procrustes", permutations=30, seed=4)
    assert single.measure == "procrustes" and single.p_value is not None
    again = runs.compare_measure(warehouse, deep, "words", "procrustes", permutations=30, seed=4)
    assert again.result_id == single.result_id
    plain = runs.compare_measure(
        warehouse, deep, "words", "procrustes", options={"centre": "false"}
    )
    assert plain.result_id != single.result_id

    swept = runs.sweep(warehouse, ["toy"], ["words"], tests=["procrustes"], permutations=30, seed=7)
    by_layer = {row.space_a: row for row in swept.rows}
    assert set(by_layer) >= set(layers)
    # Every path gives one number: the sweep's row is the single analysis with its seed.
    row = by_layer[deep]
    assert (
        runs.compare_measure(
            warehouse, deep, "words", "procrustes", permutations=30, seed=row.seed
        ).result_id
        == row.result_id
    )
    assert by_layer[deep].statistic > by_layer[shallow].statistic

    found = grid(warehouse, "toy", ["words"], tests=["procrustes"], permutations=30, seed=2)
    assert found.grids[0].test == "procrustes" and found.grids[0].best_space_a == deep
    peak = peak_layer(
        warehouse, "toy", "words", tests=["procrustes"], permutations=30, bootstrap=30, seed=2
    )
    assert peak.grids[0].peak_relative_depth is not None

    difference = diff(
        warehouse,
        f"procrustes:{by_layer[deep].result_id}",
        f"procrustes:{by_layer[shallow].result_id}",
        bootstrap=40,
        permutations=40,
        seed=1,
    )
    assert difference.difference > 0
    checked = verify(warehouse, result=f"procrustes:{single.result_id}")
    assert [v.status for v in checked.verdicts] == ["reproduced"], checked.verdicts

    curves = run_query(warehouse, "measure_curves", {"measure": "procrustes"}).table
    assert set(curves.column("layer").to_pylist()) == {f"block{i}" for i in range(4)}
    info = build_report(warehouse, tmp_path / "report", measures=["procrustes"])
    assert any("procrustes" in str(path) for path in info.figures)


def test_the_cli_lists_and_runs_the_plugin(plugin, warehouse: Warehouse, world) -> None:
    root = str(warehouse.root)
    listed = run_cli("--warehouse", root, "analyze", "measures", env=plugin)
    assert "procrustes" in listed.stdout and "centre=True" in listed.stdout
    layer = world["layers"]["toy"][2]
    done = run_cli(
        "--warehouse", root, "analyze", "compare", "--measure", "procrustes",
        "--a", layer, "--b", "words", "-o", "centre=false", "-n", "9", "--seed", "1",
        env=plugin,
    )  # fmt: skip
    assert "results (procrustes)" in done.stdout


def test_plugin_options_in_families_stale_commands_and_uninstalled_results(
    plugin, warehouse: Warehouse, world
) -> None:
    from semwh.results.named import run_query
    from semwh.runs.sweep import SweepOptions
    from semwh.runs.verify import NOT_INSTALLED, verify
    from semwh.vectors import load_space, save_space

    # A family sets a plugin's own options by measure; a shared setting never reaches them.
    options = SweepOptions(
        tests=["procrustes"],
        permutations=5,
        seed=3,
        include_random=False,
        measure_options={"procrustes": {"centre": "false"}},
    )
    swept = runs.sweep(warehouse, ["toy"], ["words"], options)
    assert {row.options["centre"] for row in swept.rows} == {False}
    with pytest.raises(Exception, match="'knn' is not among the tests"):
        SweepOptions(tests=["procrustes"], measure_options={"knn": {"k": 3}})

    # Replaced words: the refresh command of a plugin result repeats its options.
    rng = np.random.default_rng(9)
    words = rng.normal(size=(len(world["words"]), world["words"].shape[1]))
    ids = load_space(warehouse, "words").concept_ids
    save_space(warehouse, "words", "word", list(ids), words, replace=True)
    stale = run_query(warehouse, "stale_results").table.to_pylist()
    commands = {r["refresh_command"] for r in stale if r["test"] == "procrustes"}
    assert commands and all("-o 'procrustes.centre=false'" in c for c in commands), commands

    # Uninstalled: verify names the results it cannot recompute and does not pass.
    measures.unregister("procrustes")
    checked = verify(warehouse, every=True)
    assert not checked.ok
    assert {v.status for v in checked.verdicts if v.test == "procrustes"} == {NOT_INSTALLED}
