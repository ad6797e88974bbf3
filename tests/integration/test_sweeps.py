# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Sweeps are stored families: their FDR never changes, layer_curves shows only current
results, every input that changes a number is in the reuse key, `semwh verify` recomputes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from semwh import runs
from semwh.errors import DegenerateInputError
from semwh.runs.verify import verify
from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import upgrade
from semwh.warehouse.models import Result2v2, ResultRSA, VectorFile
from semwh.warehouse.readonly import run_sql
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    N_CONCEPTS,
    WORD_DIM,
    count,
    template,
    warehouse,
    wnids,
    world,
)
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
