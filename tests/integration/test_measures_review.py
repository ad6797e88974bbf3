# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Refusals and options of the measures commands, through the installed command where the
command's own wiring is what is checked."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest

from semwh import runs
from semwh.errors import ConfigError
from semwh.results.named import run_query
from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    template,
    warehouse,
    wnids,
    world,
)

pytestmark = pytest.mark.integration


def cli(wh: Warehouse, *args: str, check: bool = True):
    return run_cli("--warehouse", str(wh.root), *args, check=check)


def refused(proc, *parts: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


def test_report_heatmap_is_drawn_without_a_sweep_and_checked(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    refused(
        cli(warehouse, "report", str(tmp_path / "a"), "--heatmap", "nosuch", check=False),
        "unknown space 'nosuch'",
    )
    refused(
        cli(warehouse, "report", str(tmp_path / "b"), "--heatmap", "words:euclid", check=False),
        "unknown similarity metric 'euclid'",
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    cli(warehouse, "report", str(tmp_path / "c"), "--heatmap", "words:cosine")
    assert (tmp_path / "c" / "figures" / "heatmap_words_cosine.svg").is_file()
    assert "words: cosine similarity" in (tmp_path / "c" / "report.html").read_text()


# Columns of each stored result that a refresh must repeat exactly.
OPTION_COLUMNS = {
    "rsa": ("results_rsa", "similarity, method, bootstrap, n_permutations, seed"),
    "2v2": ("results_2v2", "similarity, distance, tie_tol, bootstrap, n_permutations, seed"),
    "cka": ("results_measures", "estimator, n_permutations, seed"),
    "knn": ("results_measures", "k, n_permutations, seed"),
    "reg2v2": ("results_measures", "distance, penalties, tie_tol, n_permutations, seed"),
}


def options_of(wh: Warehouse, test: str, space: str) -> list[tuple]:
    table, columns = OPTION_COLUMNS[test]
    where = f"space_b = '{space.replace(chr(39), chr(39) * 2)}'"
    if table == "results_measures":
        where += f" AND measure = '{test}'"
    sql = f"SELECT {columns}, space_b_sha256 FROM {table} WHERE {where} ORDER BY result_id"
    return [tuple(r.values()) for r in run_sql(wh, sql).table.to_pylist()]


def test_refresh_commands_repeat_every_option_and_are_shell_safe(
    warehouse: Warehouse, world
) -> None:
    name = "it's; rm -rf ~"
    layer = world["layers"]["toy"][3]
    save_space(warehouse, name, "word", wnids(), world["words"])
    runs.compare(
        warehouse,
        layer,
        name,
        "rsa",
        similarity="cosine",
        method="pearson",
        permutations=5,
        seed=2,
        bootstrap=4,
    )
    runs.compare(
        warehouse,
        layer,
        name,
        "2v2",
        similarity="spearman",
        distance="cosine",
        permutations=5,
        seed=2,
        bootstrap=4,
        tie_tol=1e-9,
    )
    runs.measure(warehouse, layer, name, "cka", estimator="biased", permutations=5, seed=2)
    runs.measure(warehouse, layer, name, "knn", k=4, permutations=5, seed=2)
    runs.measure(
        warehouse,
        layer,
        name,
        "reg2v2",
        distance="pearson",
        penalties=(0.1, 10.0),
        tie_tol=1e-8,
        permutations=5,
        seed=2,
    )
    before = {test: options_of(warehouse, test, name) for test in OPTION_COLUMNS}
    save_space(warehouse, name, "word", wnids(), 2.0 * world["words"], replace=True)
    stale = run_query(warehouse, "stale_results", {"space": name}).table.to_pylist()
    assert sorted(r["test"] for r in stale) == sorted(OPTION_COLUMNS)
    for row in stale:
        argv = shlex.split(row["refresh_command"])
        assert argv[:3] == ["semwh", "analyze", row["test"]] and name in argv, argv
        run_cli("--warehouse", str(warehouse.root), *argv[1:])
        (old,), (_, new) = before[row["test"]], options_of(warehouse, row["test"], name)
        assert new[:-1] == old[:-1] and new[-1] != old[-1], row["refresh_command"]


def test_sweeps_that_cannot_run_are_refused_before_they_are_recorded(
    warehouse: Warehouse, world
) -> None:
    rng = np.random.default_rng(0)
    d = np.abs(rng.standard_normal((len(wnids()), len(wnids()))))
    d = d + d.T
    np.fill_diagonal(d, 0.0)
    save_space(warehouse, "behaviour", "rdm", wnids(), d)
    with pytest.raises(ConfigError, match=r"--words 'behaviour' is an RDM.*--tests cka"):
        runs.sweep(warehouse, ["toy"], ["behaviour"], tests=["rsa", "cka"], seed=1)
    with pytest.raises(ConfigError, match=r"--k 50: .*'words' share at most 14 .*1 to 13"):
        runs.sweep(warehouse, ["toy"], ["words"], tests=["knn"], k=50, seed=1)
    with pytest.raises(ConfigError, match="--diff-random .* --no-random"):
        runs.sweep(warehouse, ["toy"], ["words"], include_random=False, control_diffs=True, seed=1)
    assert run_sql(warehouse, "SELECT count(*) AS n FROM sweeps").table.to_pylist() == [{"n": 0}]


def test_seeds_outside_64_bits_are_refused_before_anything_is_stored(
    warehouse: Warehouse, world
) -> None:
    from semwh.runs.difference import diff
    from semwh.runs.grid import grid, peak_layer

    layer, big = world["layers"]["toy"][3], 2**63
    calls = [
        lambda: runs.compare(warehouse, layer, "words", "rsa", permutations=3, seed=big),
        lambda: runs.compare(warehouse, layer, "words", "2v2", permutations=3, seed=big),
        *(
            lambda test=test: runs.measure(warehouse, layer, "words", test, k=3, seed=big)
            for test in ("cka", "knn", "reg2v2")
        ),
        lambda: diff(warehouse, "rsa:1", "rsa:2", seed=big),
        lambda: runs.sweep(warehouse, ["toy"], ["words"], seed=big),
        lambda: grid(warehouse, "toy", ["words"], permutations=3, seed=big),
        lambda: peak_layer(warehouse, "toy", "words", permutations=3, seed=big),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match="seed must be 0 or more and below 2\\*\\*63"):
            call()
    tables = ("analysis_runs", "sweeps", "results_rsa", "results_2v2", "results_measures")
    for table in tables:
        assert run_sql(warehouse, f"SELECT count(*) AS n FROM {table}").table.to_pylist() == [
            {"n": 0}
        ], table
    refused(
        cli(warehouse, "analyze", "diff", "rsa:1", "rsa:2", "--seed", "-1", check=False),
        "seed must be 0 or more",
    )
    refused(
        cli(warehouse, "analyze", "knn", "--a", layer, "--b", "words", "--k", "20", check=False),
        f"--k 20: spaces '{layer}' and 'words' share 14 concepts",
    )
    with pytest.raises(ConfigError, match=r"unknown value 'bogus' \(choose 2v2, rsa, cka"):
        run_query(warehouse, "measure_curves", {"measure": "bogus"})
