"""`semwh analyze ...` through the installed command, in a real subprocess.

Each subprocess pays the command's start-up, so every test here makes one or two calls and
checks the stored rows in-process.
"""

from __future__ import annotations

import pytest
import typer
from sqlalchemy import select

from semwh import runs
from semwh.cli import analyze
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import AnalysisRun, Result2v2, ResultRecovery
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.integration.test_analyze import build_world
from tests.integration.test_analyze_recovery import MODEL, build_recovery_world

pytestmark = pytest.mark.integration


def cli(wh: Warehouse, *args: str, check: bool = True):
    return run_cli("--warehouse", str(wh.root), "analyze", *args, check=check)


def test_every_analyze_command_has_help_ending_in_an_example() -> None:
    group = typer.main.get_command(analyze.app)
    assert hasattr(group, "commands")
    assert set(group.commands) == {
        "rsa",
        "2v2",
        "cka",
        "knn",
        "reg2v2",
        "diff",
        "recovery",
        "sweep",
        "grid",
        "peak",
        "compare",
        "measures",
        "image-scores",
    }
    for name, command in group.commands.items():
        last = (command.help or "").strip().splitlines()[-1]
        assert last.startswith(f"Example: semwh analyze {name} "), name


def test_rsa_and_2v2_store_and_print_rows(warehouse: Warehouse) -> None:
    build_world(warehouse)
    proc = cli(
        warehouse,
        "rsa",
        "--a",
        "toy/block0",
        "--b",
        "words",
        "--similarity",
        "pearsn",
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "unknown similarity metric 'pearsn' (choose pearson, spearman, cosine)" in proc.stderr
    with warehouse.session() as session:
        assert session.scalars(select(AnalysisRun)).first() is None

    out = cli(warehouse, "rsa", "--a", "toy/block3", "--b", "words", "-n", "20", "--seed", "4")
    # The command stored exactly what the library finds again for the same request.
    row = runs.compare(warehouse, "toy/block3", "words", "rsa", permutations=20, seed=4)
    assert "results_rsa" in out.stdout and "toy/block3" in out.stdout
    assert f"{row.rho:.6g}" in out.stdout and f"{row.p_value:.6g}" in out.stdout
    out = cli(
        warehouse,
        "2v2",
        "--a",
        "toy/block3",
        "--b",
        "words",
        "--distance",
        "cosine",
        "--similarity",
        "spearman",
    )
    with warehouse.session() as session:
        stored = session.scalars(select(Result2v2)).one()
    assert (stored.distance, stored.similarity, stored.n_permutations) == ("cosine", "spearman", 0)
    assert f"{stored.accuracy:.6g}" in out.stdout and str(stored.result_id) in out.stdout


def test_sweep_command(warehouse: Warehouse) -> None:
    build_world(warehouse)
    proc = cli(
        warehouse,
        "sweep",
        "--models",
        "toy",
        "--words",
        "words",
        "-n",
        "10",
        "--seed",
        "3",
        "--no-random",
    )
    assert "toy/block0" in proc.stdout and "toy-random" not in proc.stdout
    assert "8 comparisons (8 computed, 0 found stored)" in proc.stderr
    rows = run_sql(
        warehouse, "SELECT layer, p_fdr_2v2 FROM layer_curves ORDER BY depth_index"
    ).table.to_pylist()
    assert [r["layer"] for r in rows] == [f"block{i}" for i in range(4)]
    assert all(r["p_fdr_2v2"] is not None for r in rows)


def test_recovery_command(warehouse: Warehouse) -> None:
    build_recovery_world(warehouse)
    proc = cli(warehouse, "recovery", "--model", MODEL, "--words", "words", "--layers", "stage2")
    assert "stage2" in proc.stdout and "stage0" not in proc.stdout
    with warehouse.session() as session:
        row = session.scalars(select(ResultRecovery)).one()
    assert row.layer == "stage2" and row.accuracy == 1.0
