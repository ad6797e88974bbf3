"""Grids and peak-layer tests on a small real warehouse: stored as one sweep family with a
max-statistic test, found again on a rerun, queried by name, drawn as heatmaps that render in
headless Chromium, and run from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from semwh.analyze import benjamini_hochberg
from semwh.analyze.cka import linear_cka
from semwh.analyze.maxstat import max_statistic
from semwh.api import SemanticWarehouse
from semwh.errors import ConfigError
from semwh.ingest import ingest_rdm
from semwh.results.named import run_query
from semwh.results.report import build_report
from semwh.runs import result_rows
from semwh.runs.comparison import concept_bootstrap_values, plan_comparison
from semwh.runs.grid import grid, peak_layer
from semwh.runs.options import options_for
from semwh.runs.verify import verify
from semwh.vectors import load_space, save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Concept, Grid, GridCell, Sweep, SweepMember
from tests.conftest import run_cli
from tests.integration.test_rdms import subject_rdms, write_csv
from tests.integration.test_report import dump_dom

pytestmark = pytest.mark.integration

WNIDS = [f"n{10000000 + k:08d}" for k in range(14)]


def _fill(wh: Warehouse, seed: int = 0) -> None:
    """Concepts, a 3-layer vision model, a 2-layer text model and a word space, all sharing
    a structure of increasing strength; the text model misses one concept."""
    rng = np.random.default_rng(seed)
    with wh.session() as s:
        for w in WNIDS:
            s.add(Concept(concept=w, name=w, origin="file"))
    truth = rng.normal(size=(len(WNIDS), 6))
    for d, layer in enumerate(["l0", "l1", "l2"]):
        noise = rng.normal(size=(len(WNIDS), 8))
        x = np.hstack([truth * d, np.zeros((len(WNIDS), 2))]) + noise
        save_space(
            wh,
            f"vis/{layer}",
            "layer",
            WNIDS,
            x,
            model="vis",
            layer=layer,
            depth_index=d,
            relative_depth=d / 2,
        )
    for d, layer in enumerate(["embeddings", "layer.1"]):
        x = truth[:-1] * (1 + d) + rng.normal(size=(len(WNIDS) - 1, 6))
        save_space(
            wh,
            f"txt/{layer}",
            "text-layer",
            WNIDS[:-1],
            x,
            model="txt",
            layer=layer,
            depth_index=d,
            relative_depth=float(d),
        )
    save_space(wh, "words", "word", WNIDS, truth + 0.5 * rng.normal(size=truth.shape))


def test_grid_is_one_family_with_a_max_statistic_test(warehouse: Warehouse) -> None:
    _fill(warehouse)
    result = grid(warehouse, "vis", "txt", permutations=30, seed=5)
    assert [g.test for g in result.grids] == ["2v2", "rsa"] and result.computed == 12
    with warehouse.session() as s:
        members = s.scalars(select(SweepMember).where(SweepMember.sweep_id == result.sweep_id))
        p_fdr = {(m.test, m.result_id): m.p_fdr for m in members}
        sweep = s.get(Sweep, result.sweep_id)
        assert sweep is not None and sweep.status == "complete" and sweep.n_tests == 12
        for g in result.grids:
            cells = result.cells[g.grid_id]
            assert [(c.row_index, c.col_index) for c in cells] == [
                (i, j) for i in range(3) for j in range(2)
            ]
            assert g.n_concepts == len(WNIDS) - 1  # the concepts every space has
            nulls = [result_rows.null_values(s, g.test, c.result_id) for c in cells]
            again = max_statistic([c.statistic for c in cells], nulls)
            assert [c.p_fwe for c in cells] == pytest.approx(list(again.p_fwe), abs=1e-12)
            assert json.loads(g.null_max) == pytest.approx(list(again.null), abs=1e-12)
            assert g.p_fwe_best == pytest.approx(again.p_best)
            best = cells[again.best]
            assert (g.best_space_a, g.best_space_b) == (best.space_a, best.space_b)
    # BH over every cell of both tests: one family.
    keys = sorted(p_fdr)
    stored = {(c.test, c.result_id): c.p_value for cs in result.cells.values() for c in cs}
    expected = benjamini_hochberg([stored[k] for k in keys])
    assert [p_fdr[k] for k in keys] == pytest.approx(list(expected))
    rows = run_query(warehouse, "grid_cells", {"test": "rsa"}).table.to_pylist()
    assert len(rows) == 6 and sum(r["is_best"] for r in rows) == 1
    assert [r["layer_a"] for r in rows[::2]] == ["l0", "l1", "l2"]
    # The same grid again is the stored one; nothing is recomputed.
    again_result = grid(warehouse, "vis", "txt", permutations=30, seed=5)
    assert again_result.reused and again_result.sweep_id == result.sweep_id
    with warehouse.session() as s:
        assert len(s.scalars(select(Grid)).all()) == 2
        assert len(s.scalars(select(GridCell)).all()) == 12


def test_peak_layer_has_a_family_wise_p_and_a_depth_interval(warehouse: Warehouse) -> None:
    _fill(warehouse)
    result = peak_layer(warehouse, "vis", "words", permutations=40, bootstrap=60, seed=2)
    for g in result.grids:
        assert g.kind == "peak" and g.n_rows == 3 and g.n_cols == 1 and g.n_bootstrap == 60
        assert g.best_space_a == "vis/l2" and g.peak_relative_depth == 1.0
        assert 0.0 <= g.depth_ci_low <= g.depth_ci_high <= 1.0
        assert g.p_fwe_best == pytest.approx(1 / 41)
    rows = run_query(warehouse, "peak_inference", {"model": "vis"}).table.to_pylist()
    assert [(r["test"], r["peak_layer"], r["n_bootstrap"]) for r in rows] == [
        ("2v2", "l2", 60),
        ("rsa", "l2", 60),
    ]
    with pytest.raises(Exception, match="one target"):
        grid(warehouse, "vis", "txt", kind="peak", permutations=5, seed=1)


def test_cli_grid_and_its_heatmap_render_in_chromium(warehouse: Warehouse, tmp_path: Path) -> None:
    _fill(warehouse)
    root = str(warehouse.root)
    proc = run_cli(
        "--warehouse",
        root,
        "analyze",
        "grid",
        "--a",
        "vis",
        "--b",
        "txt/embeddings,txt/layer.1,words",
        "-n",
        "20",
        "--seed",
        "3",
    )
    assert "vis/l2" in proc.stdout and "p_fwe_best" in proc.stdout
    # verify recomputes every cell over the grid's concepts (13: the text model lacks one),
    # also the cells against the word space, whose two spaces share all 14.
    with warehouse.session() as s:
        (sweep_id,) = s.scalars(select(Grid.sweep_id)).unique().all()
    report = verify(warehouse, sweep_id=sweep_id)
    assert len(report.verdicts) == 18
    assert {v.status for v in report.verdicts} == {"reproduced"}, report.verdicts[:2]
    assert "max-statistic" in proc.stderr
    info = build_report(warehouse, tmp_path / "report")
    heatmaps = sorted(p.name for p in info.figures if p.name.startswith("grid_"))
    assert len(heatmaps) == 8  # 2 vs 2 and RSA: PNG, PDF, SVG and CSV
    page = info.html.read_text()
    assert "<h2>Layer grids</h2>" in page
    # The grid's cells with a vision layer on side A are also layer curves: against the word
    # space, and against the text model's layers (one figure per test, a line per text
    # layer); then the 2 heatmaps.
    pngs = sorted(p.name for p in info.figures if p.suffix == ".png")
    assert pngs[:4] == [
        "2v2_txt_layers.png",
        "2v2_words.png",
        "grid_1_2v2_vis_spaces.png",
        "grid_2_rsa_vis_spaces.png",
    ]
    assert len(pngs) == 6
    dom = dump_dom(info.html, tmp_path / "profile")
    assert 'data-figures="6/6"' in dom, dom[:300]
    assert dom.count('id="fig-grid_') == 2


VECTOR_MEASURES = ["cka", "knn", "reg2v2"]


def _copy_space(wh: Warehouse, name: str, source: str) -> None:
    space = load_space(wh, source)
    save_space(wh, name, "external", space.concept_ids, space.matrix)


def test_a_grid_of_every_measure_relabels_side_b_alike_in_every_cell(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """The max-statistic test needs permutation k to be the same relabelling of side B's
    concepts in every cell: two cells of identical spaces under other names (a copy of a row
    space, a copy of a column space) then have identical nulls, for every measure."""
    _fill(warehouse)
    _copy_space(warehouse, "copy", "vis/l1")
    _copy_space(warehouse, "words2", "words")
    rows, cols = ["vis/l1", "copy"], ["words", "words2"]
    seen: list = []
    reports: list = []

    def mapper(step, specs):  # the local map, recording what the runner hands a backend
        specs = list(specs)
        seen.extend(specs)
        return map(step, specs)

    def run(**extra):
        return grid(
            warehouse, rows, cols, tests=VECTOR_MEASURES, k=3, permutations=6, seed=6,
            mapper=mapper, progress=lambda *report: reports.append(report), **extra,
        )  # fmt: skip

    result = run()
    assert [g.test for g in result.grids] == VECTOR_MEASURES and result.computed == 12
    assert len(seen) == 12 and {spec.options.seed for spec in seen} == {6}
    assert reports[0] == ("grid", 0, 12) and reports[-1] == ("grid", 12, 12)
    with warehouse.session() as s:
        for g in result.grids:
            cells = result.cells[g.grid_id]
            nulls = {
                (c.space_a, c.space_b): result_rows.null_values(s, g.test, c.result_id)
                for c in cells
            }
            base = nulls[("vis/l1", "words")]
            assert base is not None and len(set(base)) > 1, g.test
            for key in [("copy", "words"), ("vis/l1", "words2"), ("copy", "words2")]:
                assert nulls[key] == base, (g.test, key)
            stored = [result_rows.get_comparison(s, g.test, c.result_id) for c in cells]
            assert [r.statistic for r in stored] == [c.statistic for c in cells]
            assert {r.seed for r in stored} == {g.seed} == {6}
            again = max_statistic(
                [c.statistic for c in cells], [nulls[(c.space_a, c.space_b)] for c in cells]
            )
            assert [c.p_fwe for c in cells] == pytest.approx(list(again.p_fwe), abs=1e-12)
            assert g.p_fwe_best == pytest.approx(again.p_best)
    # The same grid again: every cell found stored, nothing handed to the mapper.
    assert run().reused and len(seen) == 12
    # k-NN's k stays below the concepts every space of the grid shares, refused before the
    # grid is recorded.
    with warehouse.session() as s:
        families = len(s.scalars(select(Sweep)).all())
    with pytest.raises(ConfigError, match="--k 14: the 4 spaces of the grid share 14 concepts"):
        grid(warehouse, rows, cols, tests=["cka", "knn"], k=14, permutations=3)
    # An RDM side B (--b, a peak's --target) has no feature vectors: the sweep's refusal.
    write_csv(tmp_path / "rdms.csv", WNIDS, subject_rdms(load_space(warehouse, "words").matrix))
    ingest_rdm(warehouse, "subjects", tmp_path / "rdms.csv")
    for call, flag, measures in (
        (lambda: grid(warehouse, rows, ["words", "subjects"], tests=["rsa", "cka"]), "--b", "cka"),
        (lambda: peak_layer(warehouse, "vis", "subjects", tests=["knn", "reg2v2"]), "--target",
         "knn,reg2v2"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == (
            f"{flag} 'subjects' is an RDM, which has no feature vectors: --tests {measures} "
            "need them (an RDM takes rsa and 2v2)"
        )
    with warehouse.session() as s:
        assert len(s.scalars(select(Sweep)).all()) == families


def test_a_peak_of_a_measure_resamples_the_distinct_concepts_alike_for_every_layer(
    warehouse: Warehouse,
) -> None:
    _fill(warehouse)
    result = peak_layer(
        warehouse, "vis", "words", tests=["cka", "knn"], k=3, permutations=9, bootstrap=12, seed=2
    )
    assert [g.test for g in result.grids] == ["cka", "knn"]
    for g in result.grids:
        assert g.kind == "peak" and g.n_rows == 3 and g.n_bootstrap == 12
        assert 0.0 <= g.depth_ci_low <= g.depth_ci_high <= 1.0
    rows = run_query(warehouse, "peak_inference", {"model": "vis"}).table.to_pylist()
    assert [(r["test"], r["n_bootstrap"]) for r in rows] == [("cka", 12), ("knn", 12)]
    # From Python, one test named as a string: the cells are found stored.
    again = SemanticWarehouse(warehouse).peak(
        "vis", "words", tests="cka", permutations=9, bootstrap=12, seed=2
    )
    assert again.computed == 0 and [g.test for g in again.grids] == ["cka"]
    assert again.grids[0].depth_ci_low == result.grids[0].depth_ci_low
    # Resample t: the t-th draw of n concepts with replacement from the seed (the draws of
    # the RSA bootstrap), each concept drawn entering the measure once.
    hashes = {}
    a, b = load_space(warehouse, "vis/l1"), load_space(warehouse, "words")
    spec = plan_comparison(a, b, options_for("cka"), hashes)
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(6):
        drawn = np.unique(rng.integers(0, len(WNIDS), size=len(WNIDS)))
        expected.append(linear_cka(spec.a[drawn], spec.b[drawn]).cka)
    assert concept_bootstrap_values(spec, 6, 11).tolist() == expected


def test_cli_grid_and_peak_run_the_vector_measures(warehouse: Warehouse) -> None:
    _fill(warehouse)
    root = str(warehouse.root)
    grid_args = ("analyze", "grid", "--a", "vis", "--b", "words", "--tests", "cka,knn,reg2v2")
    proc = run_cli("--warehouse", root, *grid_args, "--k", "3", "-n", "3", "--seed", "1")
    assert "p_fwe_best" in proc.stdout and "9 cells computed" in proc.stderr
    peak_args = ("analyze", "peak", "--model", "vis", "--target", "words", "--tests", "cka")
    proc = run_cli("--warehouse", root, *peak_args, "-n", "3", "--bootstrap", "5", "--seed", "2")
    assert "peak_relative_depth" in proc.stdout
    with warehouse.session() as s:
        stored = s.execute(select(Grid.kind, Grid.test).order_by(Grid.grid_id)).all()
    assert [tuple(r) for r in stored] == [
        ("grid", "cka"),
        ("grid", "knn"),
        ("grid", "reg2v2"),
        ("peak", "cka"),
    ]
    rows = run_query(warehouse, "grid_cells", {"test": "knn"}).table.to_pylist()
    assert len(rows) == 3 and all(r["p_fdr"] is not None for r in rows)
    # The backend options reach the backend (--backend ray runs the cells as Ray tasks).
    proc = run_cli("--warehouse", root, *peak_args, "--perm-block", "4", check=False)
    assert proc.returncode == 1
    assert "--perm-block apply to --backend/--engine ray only" in proc.stderr
