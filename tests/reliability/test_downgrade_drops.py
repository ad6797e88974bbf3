"""A schema downgrade that removes rows names them (table: rows) and needs --yes, and leaves
every sweep family consistent: a sweep that loses members says so (status partial, n_tests
of the tests it keeps)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from alembic.script import ScriptDirectory

from semwh.errors import ConfigError
from semwh.warehouse import models as m
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import (
    _script_only_config,
    confirm_downgrade,
    current_revision,
    downgrade,
    head_revision,
    history,
    upgrade,
)
from tests.conftest import run_cli
from tests.data.make_stored_warehouse import WHEN, add_row_to_every_table
from tests.factories import add_analysis_run, add_sweep
from tests.reliability.conftest import open_wh

pytestmark = pytest.mark.integration


def _families(wh: Warehouse) -> list[tuple[int, int, str, int]]:
    """(sweep_id, n_tests, status, members with a p-value) of every sweep."""
    assert wh.duckdb_path is not None
    conn = duckdb.connect(str(wh.duckdb_path), read_only=True)
    try:
        return conn.execute(
            "SELECT s.sweep_id, s.n_tests, s.status, count(m.p_fdr) FROM sweeps s "
            "LEFT JOIN sweep_members m USING (sweep_id) GROUP BY ALL ORDER BY 1"
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    """A head warehouse with a row in every table and a sweep of RSA and CKA together."""
    warehouse = open_wh(tmp_path / "wh")
    warehouse.root.mkdir()
    upgrade(warehouse, "head")
    # Empty, the same downgrade removes nothing and needs no confirmation; base always does.
    assert confirm_downgrade(warehouse, "0003", confirmed=False) == {}
    with pytest.raises(ConfigError, match="--yes"):
        confirm_downgrade(warehouse, "base", confirmed=False)
    with warehouse.session() as session:
        add_row_to_every_table(session)
        rsa = session.query(m.ResultRSA).first()
        cka = session.query(m.ResultMeasure).first()
        add_sweep(
            session, [("rsa", rsa.result_id, 0.04), ("cka", cka.result_id, 0.04)],
            created_at=WHEN, finished_at=WHEN, models=json.dumps(["resnet50"]),
            word_spaces=json.dumps(["glove-50d"]), tests=json.dumps(["rsa", "cka"]), seed=7,
        )  # fmt: skip
    warehouse.dispose()
    return warehouse


def test_a_downgrade_that_removes_rows_lists_them_and_needs_yes(wh: Warehouse) -> None:
    head = head_revision()
    proc = run_cli("--warehouse", str(wh.root), "db", "downgrade", "0003", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    for part in ("results_measures: 1 rows", "sweep_members: 1 rows", "partial): 1 rows", "--yes"):
        assert part in lines[0], lines[0]
    assert current_revision(wh) == head
    # Confirmed, the same list is what goes; every remaining family is whole.
    before = _families(wh)
    drops = confirm_downgrade(wh, "0003", confirmed=True)
    assert drops["results_measures"] == drops["sweep_members"] == 1
    downgrade(wh, "0003")
    after = _families(wh)
    assert [s[0] for s in after] == [s[0] for s in before]
    assert all(n_tests == members for _, n_tests, _, members in after), after
    assert [s[2] for s in after] == ["complete", "partial"]
    wh.dispose()


def test_one_revision_back_is_written_as_the_readme_writes_it(tmp_path) -> None:
    """`semwh db downgrade -1`: "-1" is the revision, not an unknown option."""
    from semwh.warehouse.migrate import upgrade

    root = tmp_path / "fresh"
    run_cli("--warehouse", str(root), "init")
    proc = run_cli("--warehouse", str(root), "db", "downgrade", "-1", check=False)
    assert proc.returncode == 0, proc.stderr
    warehouse = open_wh(root)
    assert current_revision(warehouse) != head_revision()
    upgrade(warehouse)
    assert current_revision(warehouse) == head_revision()
    warehouse.dispose()


def test_every_revision_says_what_its_downgrade_drops() -> None:
    script = ScriptDirectory.from_config(_script_only_config())
    for revision, _, _ in history():
        assert callable(getattr(script.get_revision(revision).module, "downgrade_drops", None))


def test_results_a_downgrade_cannot_hold_are_counted(tmp_path: Path) -> None:
    """Revision 0008's downgrade moves every result back; a measure's values the older
    results_measures has no column for (here an option of its own) are named first."""
    warehouse = open_wh(tmp_path / "wh")
    warehouse.root.mkdir()
    upgrade(warehouse, "head")
    with warehouse.session() as session:
        run = add_analysis_run(session, kind="procrustes", params_sha256="1" * 64)
        common = dict(
            analysis_id=run.analysis_id, space_a="a", space_b="b", n_concepts=4,
            concepts_sha256="2" * 64, statistic=0.5, n_permutations=0,
        )  # fmt: skip
        session.add(m.Result.of("procrustes", options={"scaling": True}, variant="s", **common))
        session.add(m.Result.of("cka", options={"estimator": "biased"}, variant="b", **common))
    assert confirm_downgrade(warehouse, "0008", confirmed=False) == {}
    with pytest.raises(ConfigError, match=r"values results_measures has no column for: 1 rows"):
        confirm_downgrade(warehouse, "0007", confirmed=False)
    downgrade(warehouse, "0007")
    warehouse.dispose()
    assert warehouse.duckdb_path is not None
    conn = duckdb.connect(str(warehouse.duckdb_path), read_only=True)
    try:
        rows = conn.execute(
            "SELECT measure, variant, estimator FROM results_measures ORDER BY measure"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("cka", "b", "biased"), ("procrustes", "s", None)]
