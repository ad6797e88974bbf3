# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Every path gives the same number: each measure through a single analysis, a sweep, a grid,
a peak-layer test and the blocked null of the Ray backend, against every kind of space (layer,
word, external, text-layer and an RDM with subjects). The Ray tasks themselves run these
same pure functions (tests/integration/test_ray.py runs an RDM sweep on a real Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from semwh import runs
from semwh.errors import ConfigError
from semwh.ingest import ingest_rdm
from semwh.runs import result_rows
from semwh.runs.comparison import (
    comparison_null,
    content_hashes,
    plan_comparison,
    run_comparison,
    with_null,
    without_null,
)
from semwh.runs.grid import grid, peak_layer
from semwh.runs.options import ComparisonOptions, MeasureOptions
from semwh.runs.verify import REPRODUCED, verify
from semwh.vectors import load_space, save_space
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    N_CONCEPTS,
    template,
    warehouse,
    wnids,
    world,
)
from tests.integration.test_rdms import add_concepts, subject_rdms, write_csv

pytestmark = pytest.mark.integration

PERMUTATIONS = 13
SEED = 5
TARGETS = ("words", "ext", "text/layer1", "subjects", "toy/block0")


@pytest.fixture
def spaces(warehouse, world, tmp_path):
    rng = np.random.default_rng(3)
    words = world["words"]
    save_space(warehouse, "ext", "external", wnids(), words @ rng.normal(size=(12, 7)))
    save_space(
        warehouse,
        "text/layer1",
        "text-layer",
        wnids(),
        np.tanh(words + rng.normal(size=words.shape)),
        model="text",
        layer="layer1",
        depth_index=1,
        relative_depth=1.0,
    )
    add_concepts(warehouse)
    write_csv(tmp_path / "rdms.csv", wnids(), subject_rdms(words))
    ingest_rdm(warehouse, "subjects", tmp_path / "rdms.csv")
    return warehouse


def numbers(wh, test: str, row) -> tuple:
    with wh.session() as session:
        null = result_rows.null_values(session, test, row.result_id)
        subjects = result_rows.subject_values(session, test, row.result_id)
    value = (
        row.statistic if hasattr(row, "statistic") else (row.rho if test == "rsa" else row.accuracy)
    )
    return (float(value), row.p_value, tuple(null or ()), tuple(subjects))


def test_single_sweep_grid_peak_and_blocks_give_one_number(spaces, world) -> None:
    wh = spaces
    layers = world["layers"]["toy"]
    tests = ["rsa", "2v2"]
    peak = peak_layer(
        wh, "toy", "subjects", tests=tests, permutations=PERMUTATIONS, bootstrap=4, seed=SEED
    )
    # One grid of the model's layers against every kind of target (every space has all the
    # concepts, so each cell is over the same concepts as the single analysis).
    cells = grid(wh, "toy", list(TARGETS), tests=tests, permutations=PERMUTATIONS, seed=SEED)
    for grid_row in cells.grids:
        test = grid_row.test
        (peak_row,) = [g for g in peak.grids if g.test == test]
        peaked = {c.space_a: (c.statistic, c.p_value) for c in peak.cells[peak_row.grid_id]}
        for target in TARGETS:
            stored = {c.space_a: c for c in cells.cells[grid_row.grid_id] if c.space_b == target}
            if target == "subjects":
                assert peaked == {k: (c.statistic, c.p_value) for k, c in stored.items()}
            layer = layers[1] if target != "subjects" else layers[3]
            single = runs.compare(
                wh, layer, target, test, permutations=PERMUTATIONS, seed=SEED, force=True
            )
            with wh.session() as session:
                cell_row = result_rows.get_comparison(session, test, stored[layer].result_id)
            assert numbers(wh, test, single) == numbers(wh, test, cell_row), (layer, target)
            assert (single.target is not None) == (target == "subjects")
            # The blocked null (what the Ray backend distributes) completes to the same.
            spec = plan_comparison(
                load_space(wh, layer),
                load_space(wh, target),
                ComparisonOptions.make(test, permutations=PERMUTATIONS, seed=SEED),
                content_hashes(wh, layer, target),
            )
            whole = run_comparison(spec)
            blocks = [
                comparison_null(spec, i, min(i + 4, PERMUTATIONS))
                for i in range(0, PERMUTATIONS, 4)
            ]
            parts = with_null(run_comparison(without_null(spec)), spec, np.concatenate(blocks))
            assert (parts.statistic, parts.p_value) == (whole.statistic, whole.p_value)
            np.testing.assert_array_equal(parts.null, whole.null)
            assert (whole.statistic, whole.p_value) == numbers(wh, test, single)[:2]
    sweep = runs.sweep(
        wh,
        ["toy"],
        ["subjects", "text/layer1"],
        tests=tests,
        permutations=PERMUTATIONS,
        seed=SEED,
        include_random=False,
    )
    for row in sweep.rows:
        if row.space_a != layers[2]:
            continue
        test = "rsa" if hasattr(row, "rho") else "2v2"
        again = runs.compare(
            wh,
            row.space_a,
            row.space_b,
            test,
            permutations=PERMUTATIONS,
            seed=row.seed,
            force=True,
        )
        assert numbers(wh, test, again) == numbers(wh, test, row), (row.space_a, row.space_b)
    # The grid's cells were each checked against a single analysis above.
    for family in (sweep.sweep_id, peak.sweep_id):
        report = verify(wh, sweep_id=family)
        assert report.verdicts and {v.status for v in report.verdicts} == {REPRODUCED}, [
            v.detail for v in report.verdicts if v.status != REPRODUCED
        ]


@pytest.mark.parametrize("measure", ["cka", "knn", "reg2v2"])
def test_vector_measures_give_one_number_and_refuse_an_rdm_on_every_path(
    spaces, world, measure
) -> None:
    wh = spaces
    layer = world["layers"]["toy"][2]
    extra = {"k": 3} if measure == "knn" else {}
    vector_targets = ["ext", "text/layer1"]
    sweep = runs.sweep(
        wh,
        ["toy"],
        vector_targets,
        tests=[measure],
        permutations=PERMUTATIONS,
        seed=SEED,
        include_random=False,
        **extra,
    )
    by_pair = {(r.space_a, r.space_b): r for r in sweep.rows}
    for target in vector_targets:
        row = by_pair[(layer, target)]
        single = runs.measure(
            wh,
            layer,
            target,
            measure,
            permutations=PERMUTATIONS,
            seed=row.seed,
            force=True,
            **extra,
        )
        assert numbers(wh, measure, single) == numbers(wh, measure, row)
        spec = plan_comparison(
            load_space(wh, layer),
            load_space(wh, target),
            MeasureOptions.make(measure, permutations=PERMUTATIONS, seed=row.seed, **extra),
            content_hashes(wh, layer, target),
        )
        blocks = np.concatenate(
            [comparison_null(spec, 0, 6), comparison_null(spec, 6, PERMUTATIONS)]
        )
        parts = with_null(run_comparison(without_null(spec)), spec, blocks)
        assert (parts.statistic, parts.p_value) == numbers(wh, measure, single)[:2]
    for call in (
        lambda: runs.measure(wh, layer, "subjects", measure, **extra),
        lambda: runs.sweep(
            wh,
            ["toy"],
            ["subjects"],
            tests=[measure],
            permutations=3,
            include_random=False,
            **extra,
        ),
        lambda: plan_comparison(
            load_space(wh, layer),
            load_space(wh, "subjects"),
            MeasureOptions.make(measure, **extra),
            {},
        ),
    ):
        with pytest.raises(ConfigError, match="RDM, which has no feature vectors"):
            call()
    with pytest.raises(ConfigError):
        grid(wh, "toy", ["subjects"], tests=[measure], permutations=3)


def test_rows_of_the_mean_rdm_method_are_superseded_and_listed_for_recomputation(
    spaces, world
) -> None:
    """A row stored by the earlier method (against minus the subjects' mean RDM: no target)
    is never reused, is reported by verify as superseded, and stale_results lists it with the
    command that recomputes it."""
    from semwh.results.named import run_query

    wh = spaces
    layer = world["layers"]["toy"][3]
    current = runs.compare(wh, layer, "subjects", "rsa", permutations=PERMUTATIONS, seed=SEED)
    with wh.session() as session:
        old = session.get(result_rows.result_model("rsa"), current.result_id)
        old.target, old.n_subjects, old.rho, old.analysis_version = None, None, 0.123, 2
    again = runs.compare(wh, layer, "subjects", "rsa", permutations=PERMUTATIONS, seed=SEED)
    assert again.result_id != current.result_id and again.target == "subjects:none"
    verdicts = {v.result_id: v for v in verify(wh, every=True).verdicts}
    assert verdicts[current.result_id].status == "superseded"
    assert "semwh analyze rsa --a" in verdicts[current.result_id].detail
    assert verdicts[again.result_id].status == REPRODUCED
    stale = run_query(wh, "stale_results").table.to_pylist()
    (listed,) = [r for r in stale if r["result_id"] == current.result_id]
    assert "method superseded" in listed["changed"]
    assert listed["refresh_command"].startswith("semwh analyze rsa --a ")
    assert N_CONCEPTS == len(wnids())


def test_subject_numbers_are_verified_and_survive_no_downgrade_silently(spaces, world) -> None:
    """verify recomputes each subject's value, the ceiling and the inference over subjects;
    a downgrade that drops them leaves rows that say so (superseded, not current); a stale
    result made with --normalise is listed with the option that remakes it."""
    from semwh.results.named import run_query
    from semwh.warehouse.migrate import downgrade, upgrade
    from semwh.warehouse.models import SubjectInference, SubjectResult

    wh = spaces
    layer = world["layers"]["toy"][3]
    sweep = runs.sweep(
        wh, ["toy"], ["subjects"], tests=["rsa"], permutations=PERMUTATIONS, seed=SEED,
        include_random=False,
    )  # fmt: skip
    row = next(r for r in sweep.rows if r.space_a == layer)
    ranked = runs.compare(wh, layer, "subjects", "rsa", seed=SEED, normalise="rank")
    assert ranked.target == "subjects:rank"
    with wh.session() as session:
        first = session.get(SubjectResult, ("rsa", row.result_id, 0))
        first.statistic += 0.5
        t_row = session.get(SubjectInference, ("rsa", row.result_id, "t"))
        t_row.p_value = 1e-9
    verdicts = {v.result_id: v for v in verify(wh, sweep_id=sweep.sweep_id).verdicts}
    assert verdicts[row.result_id].status == "drifted"
    assert verdicts[row.result_id].max_abs_diff == pytest.approx(0.5)
    curves = run_query(wh, "layer_curves", {"word_space": "subjects"}).table.to_pylist()
    assert {r["space"] for r in curves} == set(world["layers"]["toy"])
    assert all(r["ceiling_lower_rsa"] is not None and r["target"] for r in curves)

    downgrade(wh, "0006")
    upgrade(wh)
    with wh.session() as session:
        again = session.get(result_rows.result_model("rsa"), row.result_id)
        assert (again.target, again.n_subjects, again.ceiling_lower) == (None, None, None)
    assert verify(wh, result=f"rsa:{row.result_id}").verdicts[0].status == "superseded"
    # No curve shows a superseded row as current.
    assert run_query(wh, "layer_curves", {"word_space": "subjects"}).table.num_rows == 0

    stale = run_query(wh, "stale_results").table.to_pylist()
    (listed,) = [r for r in stale if r["result_id"] == row.result_id]
    assert "method superseded" in listed["changed"]
    refreshed = runs.compare(wh, layer, "subjects", "rsa", seed=SEED, normalise="rank")
    assert refreshed.result_id != ranked.result_id  # its subject rows went with the downgrade
    ingest_again = load_space(wh, "subjects")
    save_space(
        wh, "subjects", "rdm", ingest_again.concept_ids, ingest_again.matrix * 2, replace=True
    )
    stale = run_query(wh, "stale_results").table.to_pylist()
    (normalised,) = [r for r in stale if r["result_id"] == refreshed.result_id]
    assert "--normalise rank" in normalised["refresh_command"]
