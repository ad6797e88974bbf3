# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Sweeps are stored families: their FDR never changes, layer_curves shows only current
results, every input that changes a number is in the reuse key, `semwh verify` recomputes.
Their bootstrap intervals are paired across the layers of a model, and every cell records the
seeds it used: the single command given them reproduces the cell."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from semwh import runs
from semwh.analyze.subjects import MIN_RESAMPLES
from semwh.errors import ConfigError, DegenerateInputError
from semwh.ingest import ingest_rdm
from semwh.results.named import run_query
from semwh.runs.measures import compare_measure
from semwh.runs.result_rows import subject_tables
from semwh.runs.sweep import bootstrap_seed
from semwh.runs.verify import verify
from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import upgrade
from semwh.warehouse.models import Result2v2, ResultRSA, VectorFile
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    N_CONCEPTS,
    NOISE,
    WORD_DIM,
    add_layer_space,
    add_model,
    count,
    template,
    warehouse,
    wnids,
    world,
)
from tests.integration.test_rdms import add_concepts, subject_rdms, write_csv
from tests.reliability.conftest import open_wh

pytestmark = pytest.mark.integration


def family(wh: Warehouse, sweep_id: int) -> dict[tuple[str, int], float | None]:
    rows = run_sql(
        wh, f"SELECT test, result_id, p_fdr FROM sweep_results WHERE sweep_id = {sweep_id}"
    ).table.to_pylist()
    return {(r["test"], r["result_id"]): r["p_fdr"] for r in rows}


def curves(wh: Warehouse) -> list[dict]:
    return run_sql(
        wh,
        "SELECT space, word_space, accuracy_2v2, p_fdr_2v2, rho_rsa, p_fdr_rsa, sweep_id "
        "FROM layer_curves ORDER BY space",
    ).table.to_pylist()


def test_overlapping_sweeps_leave_every_stored_family_as_written(warehouse, world) -> None:
    first = runs.sweep(warehouse, ["toy"], ["words"], permutations=20, seed=3)
    written = family(warehouse, first.sweep_id)
    assert written == first.p_fdr and len(written) == 16
    assert all(p is not None for p in written.values())

    # RSA only, without the random control: a smaller family over some of the same rows.
    second = runs.sweep(
        warehouse, ["toy"], ["words"], tests=["rsa"], permutations=20, seed=3, include_random=False
    )
    assert second.computed == 0 and second.sweep_id != first.sweep_id
    shared = set(second.p_fdr) & set(written)
    assert len(shared) == 4
    # The same rows have other FDR values in the two families, and each keeps its own.
    assert any(second.p_fdr[k] != written[k] for k in shared)
    assert family(warehouse, first.sweep_id) == written

    # --force on one member adds a row; the sweeps still list (and show) their own rows.
    member = first.rows[0]
    forced = runs.compare(
        warehouse,
        member.space_a,
        member.space_b,
        runs.result_rows.test_of(member),
        permutations=20,
        seed=member.seed,
        force=True,
    )
    assert forced.result_id != member.result_id
    assert family(warehouse, first.sweep_id) == written
    assert family(warehouse, second.sweep_id) == second.p_fdr

    sweeps = run_sql(
        warehouse, "SELECT sweep_id, status, n_tests, tests FROM sweeps ORDER BY sweep_id"
    ).table.to_pylist()
    assert [(s["status"], s["n_tests"]) for s in sweeps] == [("complete", 16), ("complete", 4)]
    assert json.loads(sweeps[1]["tests"]) == ["rsa"]

    # layer_curves shows the newest finished sweep's family for each pair, with its sweep_id.
    shown = {r["space"]: r for r in curves(warehouse)}
    for layer in world["layers"]["toy"]:
        assert shown[layer]["sweep_id"] == second.sweep_id
        assert shown[layer]["accuracy_2v2"] is None  # the RSA-only sweep has no 2 vs 2
    for layer in world["layers"]["toy-random"]:
        assert shown[layer]["sweep_id"] == first.sweep_id
    # A parameter picks another sweep through the named query.
    from semwh.results.named import run_query

    pinned = run_query(warehouse, "layer_curves", {"sweep_id": first.sweep_id}).table.to_pylist()
    assert {r["sweep_id"] for r in pinned} == {first.sweep_id} and len(pinned) == 8
    assert {(r["space"], r["p_fdr_2v2"]) for r in pinned} == {
        (r.space_a, written[("2v2", r.result_id)])
        for r in first.rows
        if runs.result_rows.test_of(r) == "2v2"
    }


def test_a_failed_sweep_lists_nothing_and_is_never_current(warehouse, world) -> None:
    def broken(fn, specs):
        raise RuntimeError("the mapper died")

    with pytest.raises(RuntimeError):
        runs.sweep(warehouse, ["toy"], ["words"], permutations=5, seed=1, mapper=broken)
    rows = run_sql(warehouse, "SELECT status FROM sweeps").table.to_pylist()
    assert rows == [{"status": "failed"}]
    assert curves(warehouse) == []


def test_a_sweep_reports_comparisons_done_to_its_progress(warehouse, world) -> None:
    seen: list[tuple[str, int, int | None]] = []
    first = runs.sweep(
        warehouse, ["toy"], ["words"], permutations=5, seed=3, include_random=False,
        progress=lambda what, done, total: seen.append((what, done, total)),
    )  # fmt: skip
    total = len(first.rows)
    assert seen == [("sweep", done, total) for done in range(total + 1)]
    # Comparisons found stored count as done too.
    seen.clear()
    runs.sweep(
        warehouse, ["toy"], ["words"], permutations=5, seed=3, include_random=False,
        progress=lambda what, done, total: seen.append((what, done, total)),
    )  # fmt: skip
    assert seen == [("sweep", done, total) for done in range(total + 1)]


def test_replaced_word_space_leaves_layer_curves_until_reanalysed(warehouse, world) -> None:
    first = runs.sweep(warehouse, ["toy"], ["words"], permutations=10, seed=2, include_random=False)
    old = {r["space"]: r["accuracy_2v2"] for r in curves(warehouse)}
    assert len(old) == 4

    # A new version of the word space, its concepts stored in another order.
    rng = np.random.default_rng(11)
    order = np.arange(N_CONCEPTS)[::-1]
    new_vectors = rng.normal(size=(N_CONCEPTS, WORD_DIM))
    save_space(
        warehouse, "words", "word", [wnids()[i] for i in order], new_vectors[order], replace=True
    )
    assert curves(warehouse) == []  # nothing current: the old results are history only
    stale = run_sql(warehouse, "SELECT * FROM sweep_results WHERE NOT is_current").table.num_rows
    assert stale == 8

    from semwh.results.named import run_query

    listed = run_query(warehouse, "stale_results", {"space": "words"}).table.to_pylist()
    assert len(listed) == 8 and all(r["changed"] == "space_b changed" for r in listed)
    refresh = "semwh analyze sweep --models 'toy'"
    assert all(r["refresh_command"].startswith(refresh) for r in listed)

    # Fewer permutations than the old results: the curve still shows only the new ones.
    second = runs.sweep(warehouse, ["toy"], ["words"], permutations=5, seed=2, include_random=False)
    now = curves(warehouse)
    assert {r["sweep_id"] for r in now} == {second.sweep_id}
    new_ids = {r.result_id for r in second.rows if runs.result_rows.test_of(r) == "2v2"}
    assert {r.result_id for r in first.rows}.isdisjoint({r.result_id for r in second.rows})
    # The new numbers are those of the new vectors, aligned by concept whatever their order.
    from semwh.analyze import two_vs_two
    from tests.integration.test_analyze import matrices

    for row in now:
        sim_a, sim_b, _ = matrices(warehouse, row["space"], "words")
        assert row["accuracy_2v2"] == two_vs_two(sim_a, sim_b).accuracy
    got = run_sql(warehouse, "SELECT result_id_2v2 FROM layer_curves").table.column(0)
    assert set(got.to_pylist()) == new_ids
    assert old != {r["space"]: r["accuracy_2v2"] for r in now}


@pytest.mark.parametrize(
    "change",
    [
        {"similarity": "spearman"},
        {"distance": "cosine"},
        {"tie_tol": 1e-6},
        {"permutations": 7},
        {"seed": 99},
        {"bootstrap": 20},
        "space_a",
        "space_b",
        "version",
    ],
    ids=str,
)
def test_each_reuse_key_field_forces_a_recompute(warehouse, world, change, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    # An external space stands for space_a so that a new version of it can be ingested.
    save_space(warehouse, "ext", "external", wnids(), rng.normal(size=(N_CONCEPTS, 5)))
    base = dict(permutations=6, seed=5)
    first = runs.compare(warehouse, "ext", "words", "2v2", **base)
    assert runs.compare(warehouse, "ext", "words", "2v2", **base).result_id == first.result_id
    kwargs = base
    if change == "space_a":
        new = rng.normal(size=(N_CONCEPTS, 5))
        save_space(warehouse, "ext", "external", wnids(), new, replace=True)
    elif change == "space_b":
        new = rng.normal(size=(N_CONCEPTS, 5))
        save_space(warehouse, "words", "word", wnids(), new, replace=True)
    elif change == "version":
        from semwh import measures

        two_vs_two = type(measures.get("2v2"))
        monkeypatch.setattr(two_vs_two, "version", two_vs_two.version + 1)
    else:
        kwargs = {**base, **change}
    before = count(warehouse, Result2v2)
    again = runs.compare(warehouse, "ext", "words", "2v2", **kwargs)
    assert again.result_id != first.result_id
    assert count(warehouse, Result2v2) == before + 1


def test_rsa_method_is_in_the_key(warehouse, world) -> None:
    layer = world["layers"]["toy"][1]
    first = runs.compare(warehouse, layer, "words", "rsa", permutations=4, seed=1)
    other = runs.compare(warehouse, layer, "words", "rsa", permutations=4, seed=1, method="kendall")
    assert other.result_id != first.result_id and count(warehouse, ResultRSA) == 2


def test_degenerate_two_vs_two_pair_names_the_concepts(warehouse, world) -> None:
    # Concept 0 is equally similar to every other concept but concept 1: row 0 of its
    # similarity matrix with entries 0 and 1 removed is constant.
    from semwh.analyze import two_vs_two

    rng = np.random.default_rng(4)
    n = 8
    sim = np.corrcoef(rng.normal(size=(n, 30)))
    sim[0, 2:] = sim[2:, 0] = 0.3
    labels = [f"c{i}" for i in range(n)]
    with pytest.raises(DegenerateInputError, match=r"\(c0, c1\)") as info:
        two_vs_two(sim, np.corrcoef(rng.normal(size=(n, 30))), labels=labels, space_a="flat")
    assert "'flat'" in str(info.value)


def test_verify_reproduces_then_names_an_altered_file(warehouse, world) -> None:
    result = runs.sweep(warehouse, ["toy"], ["words"], permutations=8, seed=4, include_random=False)
    report = verify(warehouse, sweep_id=result.sweep_id)
    assert report.ok and len(report.verdicts) == 8
    assert {v.status for v in report.verdicts} == {"reproduced"}

    # Alter one layer's concept file on disk (same size, other bytes).
    layer = world["layers"]["toy"][1]
    with warehouse.session() as session:
        from sqlalchemy import select

        from semwh.warehouse.models import Space

        space_id = session.scalar(select(Space.space_id).where(Space.name == layer))
        path = session.scalar(select(VectorFile.path).where(VectorFile.space_id == space_id))
    target = warehouse.vectors.local_path(path)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    report = verify(warehouse, every=True)
    assert not report.ok and list(report.bad_files) == [path]
    changed = [v for v in report.verdicts if v.status == "inputs changed"]
    assert {v.space_a for v in changed} == {layer} and len(changed) == 2
    assert all(path in v.detail and repr(layer) in v.detail for v in changed)


def test_migration_carries_old_p_fdr_into_a_sweep(tmp_path: Path) -> None:
    wh = open_wh(tmp_path / "wh")
    wh.root.mkdir()
    upgrade(wh, "0002")
    conn = duckdb.connect(str(wh.duckdb_path))
    when = "TIMESTAMP '2026-01-01 12:00:00'"
    hashes = json.dumps({"m/l": "a" * 64, "w": "b" * 64})
    members = [
        {"test": "2v2", "result_id": 11, "p_value": 0.02, "p_fdr": 0.04},
        {"test": "rsa", "result_id": 12, "p_value": 0.03, "p_fdr": 0.04},
    ]
    for aid, kind, params in (
        (1, "2v2", {"bootstrap": 0}),
        (2, "rsa", {"bootstrap": 30}),
        (3, "sweep", {"models": ["m"], "word_spaces": ["w"], "members": members}),
        (4, "recovery", {"model": "m", "word_space": "w"}),
    ):
        rec_hashes = json.dumps({"m/l": json.loads(hashes)}) if kind == "recovery" else hashes
        conn.execute(
            "INSERT INTO analysis_runs VALUES (?, ?, ?, 'x', 7, '0.1', '{}', ?, 'cpu', 1.0, "
            f"{when}, {when})",
            [aid, kind, json.dumps(params), rec_hashes],
        )
    common = "'m/l', 'w', 4, 'c', 'pearson'"
    conn.execute(
        f"INSERT INTO results_2v2 VALUES (11, 1, 'pearson', 6, 0.9, {common}, 0.02, 0.01, 10, 7,"
        f" NULL, NULL, NULL, NULL, {when})"
    )
    conn.execute(
        f"INSERT INTO results_rsa VALUES (12, 2, 'spearman', 0.5, {common}, 0.03, 0.06, 10, 7,"
        f" NULL, NULL, NULL, NULL, {when})"
    )
    conn.execute(
        "INSERT INTO results_recovery VALUES (13, 4, 'm', 'l', 'm/l', 'w', 4, 'c', 'pearson', "
        f"3, 2, 0.66, 0.5, 0.3, 1, 1, 1.0, 0.5, 1.0, 1.0, 0, NULL, {when})"
    )
    conn.close()
    upgrade(wh, "head")
    rows = run_sql(
        wh,
        "SELECT s.status, r.test, r.result_id, r.p_fdr FROM sweep_results r "
        "JOIN sweeps s USING (sweep_id) ORDER BY r.result_id",
    ).table.to_pylist()
    # The sweep's recorded family keeps the p_fdr it wrote (0.04), not the value a later call
    # left in the row (0.01, 0.06); the recovery call's family becomes a migrated sweep.
    assert [(r["status"], r["test"], r["result_id"], r["p_fdr"]) for r in rows] == [
        ("complete", "2v2", 11, 0.04),
        ("complete", "rsa", 12, 0.04),
        ("migrated", "recovery", 13, 0.3),
    ]
    got = run_sql(
        wh, "SELECT space_a_sha256, space_b_sha256, bootstrap, tie_tol FROM results_2v2"
    ).table.to_pylist()
    assert got == [
        {"space_a_sha256": "a" * 64, "space_b_sha256": "b" * 64, "bootstrap": 0, "tie_tol": 1e-10}
    ]
    assert run_sql(wh, "SELECT bootstrap FROM results_rsa").table.to_pylist() == [{"bootstrap": 30}]
    cols = run_sql(wh, "SELECT * FROM results_rsa").table.column_names
    assert "p_fdr" not in cols
    # A new sweep draws its id after the carried ones.
    with wh.session() as session:
        from semwh.runs import families

        opened = families.open_sweep(
            session, models=[], word_spaces=[], tests=[], n_permutations=0, seed=None, params={}
        )
        assert opened.sweep_id == 3


def test_a_killed_sweep_is_removed_by_the_next_one(warehouse, world) -> None:
    import subprocess
    import sys

    from semwh.runs import families

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )

    def opened(session, x: int):  # noqa: ANN001, ANN202
        return families.open_sweep(
            session,
            models=["toy"],
            word_spaces=["words"],
            tests=["rsa"],
            n_permutations=0,
            seed=None,
            params={"x": x},
        )

    with warehouse.session() as session:
        opened(session, 1).pid = int(dead.stdout)
        alive_id = opened(session, 2).sweep_id
    result = runs.sweep(warehouse, ["toy"], ["words"], tests=["rsa"], permutations=0)
    statuses = dict(run_sql(warehouse, "SELECT sweep_id, status FROM sweeps").rows())
    # The dead process's sweep is gone; one of a live process (this one) is left alone.
    assert statuses == {alive_id: "running", result.sweep_id: "complete"}


def test_a_rerun_after_a_kill_takes_the_id_of_the_killed_family(warehouse, world) -> None:
    import subprocess
    import sys

    from semwh.runs import families

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    family = dict(models=["toy"], word_spaces=["words"], tests=["rsa"], n_permutations=0, seed=None)
    with warehouse.session() as session:
        other = families.open_sweep(session, **family, params={"x": 2}).sweep_id
    with warehouse.session() as session:
        killed = families.open_sweep(session, **family, params={"x": 1})
        killed.pid = int(dead.stdout)
        killed_id = killed.sweep_id
    with warehouse.session() as session:
        again = families.open_sweep(session, **family, params={"x": 1}).sweep_id
    # The killed run's family keeps its id (its rows are those of an uninterrupted run); a
    # family of other options gets its own.
    assert again == killed_id and other != killed_id


def test_sweep_options_are_one_object_checked_when_made(warehouse, world) -> None:
    from dataclasses import FrozenInstanceError

    from semwh.errors import ConfigError
    from semwh.runs.sweep import SweepOptions

    with pytest.raises(ConfigError, match=r"unknown sweep option\(s\) permutatons \(choose tests,"):
        runs.sweep(warehouse, ["toy"], ["words"], permutatons=5)
    with pytest.raises(ConfigError, match="unknown test 'rsx'"):
        SweepOptions(tests=["rsx"])
    with pytest.raises(ConfigError, match="a sweep needs at least one test"):
        SweepOptions(tests=[])
    with pytest.raises(ConfigError, match="--diff-random"):
        SweepOptions(control_diffs=True, include_random=False)
    options = SweepOptions(tests="rsa", permutations=5, seed=2, include_random=False)
    assert options.tests == ("rsa",)
    with pytest.raises(FrozenInstanceError):
        options.seed = 3  # type: ignore[misc]
    first = runs.sweep(warehouse, ["toy"], ["words"], options)
    # The keyword spelling is the same sweep; keywords replace fields of a given object.
    again = runs.sweep(
        warehouse, ["toy"], ["words"], tests=["rsa"], permutations=5, seed=2, include_random=False
    )
    assert again.reused and again.sweep_id == first.sweep_id
    other = runs.sweep(warehouse, ["toy"], ["words"], options, seed=3)
    assert other.sweep_id != first.sweep_id and other.seed == 3


# Bootstrap intervals and the seeds of every cell.

BOOT = 40


def _twin(wh, words: np.ndarray) -> None:
    """A model ``twin`` whose two layers are the same vectors: only paired resamples give
    them the same intervals."""
    ids = add_model(wh, "twin", 2)
    vectors = words + 0.8 * np.random.default_rng(4).normal(size=words.shape)
    for i in range(2):
        add_layer_space(wh, "twin", i, ids[i], 2, vectors)


def _curves(wh, columns: str) -> list[dict]:
    return run_sql(wh, f"SELECT {columns} FROM layer_curves ORDER BY space").table.to_pylist()


def test_sweep_intervals_are_paired_and_every_cell_is_reproduced_by_the_single_command(
    warehouse, world
) -> None:
    _twin(warehouse, world["words"])
    # An interval stored by a single analysis was not drawn with the other layers'
    # resamples: a sweep given no seed (any stored seed would do) computes its own.
    single = runs.compare(warehouse, "twin/block0", "words", permutations=9, bootstrap=BOOT)
    tests = ["rsa", "2v2", "cka", "knn", "reg2v2"]
    result = runs.sweep(
        warehouse, ["twin"], ["words"], tests=tests, permutations=9, k=3, bootstrap=BOOT,
        include_random=False,
    )  # fmt: skip
    assert result.computed == len(result.rows) == 10
    assert single.result_id not in {r.result_id for r in result.rows}
    seed = result.seed
    rows = {(r.measure, r.space_a): r for r in result.rows}
    for (test, layer), row in rows.items():
        # The permutation stream: a seed derived from the sweep's, the test and both spaces.
        assert row.seed == runs.derive_seed(seed, test, layer, "words")
        if test not in ("rsa", "2v2"):
            assert row.ci_low is None and row.bootstrap == 0 and row.bootstrap_seed is None
            continue
        assert row.bootstrap == BOOT
        assert row.ci_low <= row.statistic <= row.ci_high, (test, layer)
        # The bootstrap stream: one per model and target, never the layer's or the test's.
        assert row.bootstrap_seed == bootstrap_seed(seed, "twin", "words")
        twin = rows[(test, "twin/block1" if layer == "twin/block0" else "twin/block0")]
        assert (row.ci_low, row.ci_high) == (twin.ci_low, twin.ci_high)

    # layer_curves and measure_curves show each test's interval.
    shown = _curves(warehouse, "space, ci_low_rsa, ci_high_rsa, ci_low_2v2, ci_high_2v2")
    for curve in shown:
        for test in ("rsa", "2v2"):
            row = rows[(test, curve["space"])]
            assert (curve[f"ci_low_{test}"], curve[f"ci_high_{test}"]) == (row.ci_low, row.ci_high)
    measure = run_sql(
        warehouse,
        "SELECT measure, space, ci_low, ci_high FROM measure_curves WHERE is_latest",
    ).table.to_pylist()
    assert {(m["measure"], m["space"]): (m["ci_low"], m["ci_high"]) for m in measure} == {
        key: (r.ci_low, r.ci_high) for key, r in rows.items()
    }

    # The single command given a cell's recorded seeds gives its numbers again, exactly.
    for (test, layer), row in rows.items():
        if layer != "twin/block1" or test == "rsa":
            continue
        has_interval = test == "2v2"
        again = compare_measure(
            warehouse, layer, "words", test, permutations=9, seed=row.seed,
            bootstrap=BOOT if has_interval else 0, bootstrap_seed=row.bootstrap_seed,
            options={"k": 3} if test == "knn" else {}, force=True,
        )  # fmt: skip
        assert again.result_id != row.result_id
        assert (again.statistic, again.p_value) == (row.statistic, row.p_value), test
        assert (again.ci_low, again.ci_high) == (row.ci_low, row.ci_high), test
        null = runs.permutation_null(warehouse, test, row.result_id)
        assert runs.permutation_null(warehouse, test, again.result_id) == null, test
    # ...and so does the command line (RSA).
    row = rows[("rsa", "twin/block1")]
    proc = run_cli(
        "--warehouse", str(warehouse.root), "analyze", "rsa", "--a", row.space_a, "--b",
        row.space_b, "-n", "9", "--seed", str(row.seed), "--bootstrap", str(BOOT),
        "--bootstrap-seed", str(row.bootstrap_seed), "--force", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    newest = run_sql(
        warehouse,
        "SELECT result_id, p_value, ci_low, ci_high, seed, bootstrap_seed FROM results "
        "ORDER BY result_id DESC LIMIT 1",
    ).table.to_pylist()[0]
    newest_id = newest.pop("result_id")
    assert newest_id != row.result_id
    assert newest == {
        "p_value": row.p_value,
        "ci_low": row.ci_low,
        "ci_high": row.ci_high,
        "seed": row.seed,
        "bootstrap_seed": row.bootstrap_seed,
    }

    # Once the word space changes, stale_results repeats the bootstrap (and a single
    # analysis' bootstrap seed) in each refresh command.
    save_space(warehouse, "words", "word", wnids(), world["words"] + 0.01, replace=True)
    stale = run_query(warehouse, "stale_results", {"space": "words"}).table.to_pylist()
    commands = {r["result_id"]: r["refresh_command"] for r in stale}
    assert commands[row.result_id].startswith("semwh analyze sweep --models 'twin'")
    assert commands[row.result_id].endswith(f"--bootstrap {BOOT}")
    assert commands[newest_id].endswith(f"--bootstrap {BOOT} --bootstrap-seed {row.bootstrap_seed}")


def test_paired_resamples_are_the_same_concept_draws_for_every_layer(warehouse, world) -> None:
    """At the library level: the specs a sweep plans for two layers of a model draw the same
    concept resamples (their statistics differ; the rows drawn do not)."""
    from semwh.measures.base import resample_rows
    from semwh.runs.sweep import SweepOptions, _specs
    from semwh.seeds import derive_seed
    from semwh.vectors import layer_spaces, load_space

    opts = SweepOptions(tests=["rsa"], permutations=0, bootstrap=BOOT, seed=3)
    with warehouse.session() as session:
        layers = layer_spaces(session, "toy")
    hashes = {layer.name: layer.content_sha256 for layer in layers} | {"words": None}
    words = {"words": load_space(warehouse, "words")}
    specs = list(_specs(warehouse, layers, words, hashes, opts.test_options, True, opts.items, 3))
    assert len(specs) == len(NOISE)
    parents = {spec.options.bootstrap_parent() for spec in specs}
    assert parents == {bootstrap_seed(3, "toy", "words")}
    drawn = [
        np.stack(resample_rows(spec.n_concepts, BOOT, derive_seed(p, "bootstrap")))
        for spec, p in zip(specs, [s.options.bootstrap_parent() for s in specs], strict=True)
    ]
    assert all(np.array_equal(drawn[0], d) for d in drawn[1:])
    # ...and the interval of each layer is the quantiles of its statistic on those draws.
    values = [spec.measure.resampled(spec, BOOT, derive_seed(3, "x")) for spec in specs[:2]]
    assert not np.array_equal(values[0], values[1])


def test_rdm_targets_get_concept_subject_and_dual_intervals_and_their_ceiling(
    warehouse, world, tmp_path
) -> None:
    _twin(warehouse, world["words"])
    add_concepts(warehouse)
    write_csv(tmp_path / "rdms.csv", wnids(), subject_rdms(world["words"]), shuffle=1)
    ingest_rdm(warehouse, "subjects", tmp_path / "rdms.csv")
    with pytest.raises(ConfigError, match=r"--bootstrap 5: against the 4 subjects of 'subjects'"):
        runs.sweep(warehouse, ["toy"], ["subjects"], tests=["rsa"], permutations=9, bootstrap=5)

    result = runs.sweep(
        warehouse, ["twin"], ["subjects"], tests=["rsa"], permutations=9, seed=1,
        bootstrap=MIN_RESAMPLES, include_random=False,
    )  # fmt: skip
    intervals = {}
    assert {row.bootstrap_seed for row in result.rows} == {bootstrap_seed(1, "twin", "subjects")}
    for row in result.rows:
        assert row.ci_low <= row.statistic <= row.ci_high
        with warehouse.session() as session:
            _, inference = subject_tables(session, "rsa", row.result_id)
        intervals[row.space_a] = {
            r["method"]: (r["ci_low"], r["ci_high"])
            for r in inference.to_pylist()
            if r["method"].startswith("bootstrap")
        }
        assert set(intervals[row.space_a]) == {
            "bootstrap_concepts", "bootstrap_subjects", "bootstrap_dual",
        }  # fmt: skip
        assert intervals[row.space_a]["bootstrap_concepts"] == (row.ci_low, row.ci_high)
        # verify recomputes every interval from the recorded seeds.
        assert verify(warehouse, result=f"rsa:{row.result_id}").ok
    # Paired: the two identical layers get the same intervals over concepts, subjects, both.
    assert intervals["twin/block0"] == intervals["twin/block1"]

    # The curves carry the ceiling beside the interval, on the same scale.
    shown = _curves(
        warehouse, "space, ci_low_rsa, ci_high_rsa, ceiling_low_rsa, ceiling_high_rsa, "
        "ceiling_lower_rsa, ceiling_upper_rsa, ci_low_2v2, ceiling_low_2v2",
    )  # fmt: skip
    assert len(shown) == 2
    for curve in shown:
        assert curve["ceiling_low_rsa"] == curve["ceiling_lower_rsa"] is not None
        assert curve["ceiling_high_rsa"] == curve["ceiling_upper_rsa"] is not None
        assert curve["ci_low_2v2"] is None and curve["ceiling_low_2v2"] is None
    measure = run_sql(
        warehouse,
        "SELECT space, ci_low, ci_high, ceiling_low, ceiling_high, ceiling_lower "
        "FROM measure_curves WHERE measure = 'rsa' AND is_latest ORDER BY space",
    ).table.to_pylist()
    assert [(m["ci_low"], m["ceiling_low"]) for m in measure] == [
        (c["ci_low_rsa"], c["ceiling_low_rsa"]) for c in shown
    ]

    # The single command with the recorded seeds gives every interval again.
    row = result.rows[1]
    again = runs.compare(
        warehouse, row.space_a, "subjects", "rsa", permutations=9, seed=row.seed,
        bootstrap=MIN_RESAMPLES, bootstrap_seed=row.bootstrap_seed, force=True,
    )  # fmt: skip
    assert (again.p_value, again.ci_low, again.ci_high) == (row.p_value, row.ci_low, row.ci_high)
    with warehouse.session() as session:
        _, inference = subject_tables(session, "rsa", again.result_id)
    assert {
        r["method"]: (r["ci_low"], r["ci_high"])
        for r in inference.to_pylist()
        if r["method"].startswith("bootstrap")
    } == intervals[row.space_a]


def test_grids_refuse_a_bootstrap_with_one_line(warehouse, world) -> None:
    with pytest.raises(ConfigError, match=r"a grid's cells have no bootstrap interval"):
        runs.grid(warehouse, "toy", ["words"], permutations=9, bootstrap=10)
