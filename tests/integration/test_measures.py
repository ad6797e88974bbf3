# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""CKA, mutual k-NN and regression 2 vs 2 stored with provenance, reused, swept with FDR,
shown in measure_curves, recomputed by verify, and run from the installed CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semwh import runs
from semwh.analyze.cka import linear_cka
from semwh.analyze.knn import mutual_knn
from semwh.analyze.regression import regression_two_vs_two
from semwh.errors import ConfigError
from semwh.results.named import run_query
from semwh.results.report import build_report
from semwh.runs.difference import diff
from semwh.runs.provenance import derive_seed
from semwh.runs.verify import verify
from semwh.vectors import load_space, save_space
from semwh.warehouse.models import AnalysisRun, PermutationNull, ResultMeasure
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    count,
    template,
    warehouse,
    wnids,
    world,
)

pytestmark = pytest.mark.integration


def vectors(wh, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    sa, sb = load_space(wh, a), load_space(wh, b)
    shared = sorted(set(sa.concept_ids) & set(sb.concept_ids))
    return sa.subset(shared), sb.subset(shared)


def test_measures_are_stored_with_provenance_and_reused(warehouse, world) -> None:
    layer = world["layers"]["toy"][2]
    x, y = vectors(warehouse, layer, "words")
    cka = runs.measure(warehouse, layer, "words", "cka", permutations=30, seed=5)
    assert cka.statistic == linear_cka(x, y, n_permutations=30, seed=5).cka
    assert cka.p_value == linear_cka(x, y, n_permutations=30, seed=5).p_value
    assert (cka.measure, cka.variant, cka.estimator, cka.seed) == ("cka", "unbiased", "unbiased", 5)
    assert cka.space_a_sha256 and cka.space_b_sha256 and cka.n_concepts == len(x)
    biased = runs.measure(warehouse, layer, "words", "cka", estimator="biased")
    assert biased.result_id != cka.result_id and biased.variant == "biased"
    knn = runs.measure(warehouse, layer, "words", "knn", k=3, permutations=10, seed=1)
    assert knn.statistic == mutual_knn(x, y, k=3).alignment and knn.variant == "k=3"
    reg = runs.measure(warehouse, layer, "words", "reg2v2", penalties=[0.1, 10.0])
    expected = regression_two_vs_two(x, y, penalties=[0.1, 10.0])
    assert (reg.statistic, reg.n_pairs) == (expected.accuracy, expected.n_pairs)
    assert json.loads(reg.penalties) == [0.1, 10.0] and reg.distance == "cosine"

    # The same request finds the stored row; another option or seed does not.
    before = count(warehouse, ResultMeasure)
    assert runs.measure(warehouse, layer, "words", "cka", permutations=30).result_id == (
        cka.result_id
    )
    assert runs.measure(warehouse, layer, "words", "knn", k=4).result_id != knn.result_id
    assert count(warehouse, ResultMeasure) == before + 1
    forced = runs.measure(warehouse, layer, "words", "cka", permutations=30, seed=5, force=True)
    assert forced.result_id != cka.result_id and forced.statistic == cka.statistic

    with warehouse.session() as session:
        run = session.get(AnalysisRun, cka.analysis_id)
        assert run.kind == "cka" and json.loads(run.params)["estimator"] == "unbiased"
        assert json.loads(run.input_hashes)[layer] == cka.space_a_sha256
        null = session.get(PermutationNull, ("cka", cka.result_id))
        assert len(json.loads(null.values)) == 30

    with pytest.raises(ConfigError, match="unknown CKA estimator 'odd'"):
        runs.measure(warehouse, layer, "words", "cka", estimator="odd")
    with pytest.raises(ConfigError, match="k must be an integer from 1 to 13"):
        runs.measure(warehouse, layer, "words", "knn", k=14)

    report = verify(warehouse, result=f"cka:{cka.result_id}")
    assert report.ok, report.table().to_pylist()
    assert {v.status for v in verify(warehouse, every=True).verdicts} == {"reproduced"}

    # A new version of the word space leaves them as history with the command to refresh.
    save_space(warehouse, "words", "word", wnids(), 2.0 * world["words"] + 1.0, replace=True)
    stale = run_query(warehouse, "stale_results", {"space": "words"}).table.to_pylist()
    commands = {r["test"]: r["refresh_command"] for r in stale if r["result_id"] == cka.result_id}
    assert commands == {
        "cka": f"semwh analyze cka --a '{layer}' --b 'words' --permutations 30 --seed 5"
        " --estimator 'unbiased'"
    }
    assert any(r["refresh_command"].endswith("--k 3") for r in stale if r["test"] == "knn")


def test_a_sweep_of_measures_is_one_fdr_family_and_draws_measure_curves(
    warehouse, world, tmp_path
) -> None:
    result = runs.sweep(
        warehouse,
        ["toy"],
        ["words"],
        tests=["2v2", "cka", "knn"],
        permutations=19,
        seed=3,
        k=3,
        include_random=False,
    )
    tests = sorted({runs.result_rows.test_of(r) for r in result.rows})
    assert tests == ["2v2", "cka", "knn"] and len(result.rows) == 12
    assert len([p for p in result.p_fdr.values() if p is not None]) == 12
    for row in result.rows:
        test = runs.result_rows.test_of(row)
        assert row.seed == derive_seed(3, test, row.space_a, row.space_b)
    family = run_sql(
        warehouse,
        f"SELECT test, result_id, p_fdr FROM sweep_results WHERE sweep_id = {result.sweep_id}",
    ).table.to_pylist()
    assert {(r["test"], r["result_id"]): r["p_fdr"] for r in family} == result.p_fdr

    curves = run_query(warehouse, "measure_curves", {"measure": "cka"}).table.to_pylist()
    assert [r["layer"] for r in curves] == [f"block{i}" for i in range(4)]
    assert all(r["sweep_id"] == result.sweep_id and r["variant"] == "unbiased" for r in curves)
    # The toy layers get cleaner with depth: CKA with the words rises.
    assert curves[-1]["statistic"] > curves[0]["statistic"]
    two = run_query(warehouse, "measure_curves", {"measure": "2v2"}).table.to_pylist()
    layer_curves = run_sql(
        warehouse, "SELECT layer, accuracy_2v2 FROM layer_curves ORDER BY depth_index"
    ).table.to_pylist()
    assert [r["statistic"] for r in two] == [r["accuracy_2v2"] for r in layer_curves]

    # The report draws the measures chosen, from the same query.
    info = build_report(warehouse, tmp_path / "report", measures=["cka", "knn"])
    names = {p.name for p in info.figures}
    assert {"cka_unbiased_words.png", "knn_k_3_words.svg", "2v2_words.png"} <= names, names
    assert "linear CKA (unbiased) against words" in info.html.read_text()
    with pytest.raises(ConfigError, match="unknown measure 'ckaa'"):
        build_report(warehouse, tmp_path / "other", measures=["ckaa"])

    # A rerun repeats the family; verify recomputes every member of the sweep.
    again = runs.sweep(
        warehouse,
        ["toy"],
        ["words"],
        tests=["2v2", "cka", "knn"],
        permutations=19,
        seed=3,
        k=3,
        include_random=False,
    )
    assert again.reused and again.sweep_id == result.sweep_id
    assert verify(warehouse, sweep_id=result.sweep_id).ok


def test_cli_runs_each_measure_and_a_sweep_with_them(warehouse, world) -> None:
    layer = world["layers"]["toy"][3]
    env = {"SEMWH_WAREHOUSE": str(warehouse.root)}
    out = run_cli("analyze", "cka", "--a", layer, "--b", "words", "-n", "9", "--seed", "1", env=env)
    assert "results_measures (cka)" in out.stdout and "unbiased" in out.stdout
    out = run_cli("analyze", "knn", "--a", layer, "--b", "words", "--k", "2", env=env)
    assert "k=2" in out.stdout
    out = run_cli(
        "analyze", "reg2v2", "--a", layer, "--b", "words", "--penalties", "0.1,1", env=env
    )
    assert "cosine" in out.stdout
    out = run_cli(
        "analyze",
        "sweep",
        "--models",
        "toy",
        "--words",
        "words",
        "--tests",
        "reg2v2",
        "-n",
        "3",
        "--seed",
        "2",
        "--no-random",
        "--penalties",
        "1",
        env=env,
    )
    assert "reg2v2" in out.stdout
    rows = run_sql(warehouse, "SELECT measure, variant FROM measure_curves").table.to_pylist()
    assert {(r["measure"], r["variant"]) for r in rows} == {("reg2v2", "cosine")}


def test_differences_are_stored_reused_swept_against_controls_and_verified(
    warehouse, world
) -> None:
    deep, shallow = world["layers"]["toy"][3], world["layers"]["toy"][0]
    first = runs.compare(warehouse, deep, "words", "2v2", seed=1)
    second = runs.compare(warehouse, shallow, "words", "2v2", seed=1)
    row = diff(
        warehouse,
        f"2v2:{first.result_id}",
        f"2v2:{second.result_id}",
        bootstrap=30,
        permutations=40,
        seed=2,
    )
    assert row.difference == pytest.approx(first.accuracy - second.accuracy, abs=1e-12)
    assert (row.first_result_id, row.second_result_id) == (first.result_id, second.result_id)
    assert row.ci_low <= row.difference <= row.ci_high and 0 < row.p_value <= 1
    assert (row.space_a, row.space_b, row.n_bootstrap, row.seed) == (deep, shallow, 30, 2)
    again = diff(
        warehouse,
        f"2v2:{first.result_id}",
        f"2v2:{second.result_id}",
        bootstrap=30,
        permutations=40,
    )
    assert again.result_id == row.result_id
    cka = runs.measure(warehouse, deep, "words", "cka")
    across = diff(
        warehouse,
        f"cka:{cka.result_id}",
        f"2v2:{second.result_id}",
        bootstrap=5,
        permutations=5,
        seed=1,
    )
    assert across.difference == pytest.approx(cka.statistic - second.accuracy, abs=1e-12)
    knn = runs.measure(warehouse, deep, "words", "knn", k=2)
    with pytest.raises(ConfigError, match="mutual k-NN results are not supported"):
        diff(warehouse, f"knn:{knn.result_id}", f"2v2:{second.result_id}")

    result = runs.sweep(
        warehouse, ["toy"], ["words"], tests=["2v2"], permutations=9, seed=4, control_diffs=True
    )
    assert len(result.diffs) == 4
    for d in result.diffs:
        assert d.space_b == d.space_a.replace("toy/", "toy-random/")
        assert result.p_fdr[("diff", d.result_id)] is not None
    assert len([p for p in result.p_fdr.values() if p is not None]) == 12
    listed = run_sql(
        warehouse,
        f"SELECT count(*) AS n FROM sweep_results WHERE sweep_id = {result.sweep_id} "
        "AND test = 'diff'",
    ).table.to_pylist()
    assert listed == [{"n": 4}]
    report = verify(warehouse, sweep_id=result.sweep_id)
    assert report.ok, report.table().to_pylist()

    env = {"SEMWH_WAREHOUSE": str(warehouse.root)}
    out = run_cli(
        "analyze",
        "diff",
        f"2v2:{first.result_id}",
        f"2v2:{second.result_id}",
        "--bootstrap",
        "30",
        "-n",
        "40",
        "--seed",
        "2",
        env=env,
    )
    assert "results_diff" in out.stdout and str(row.result_id) in out.stdout
