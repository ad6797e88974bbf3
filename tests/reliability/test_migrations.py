"""Every revision upgrades and downgrades one step at a time with data in place, and the
stored warehouse of each released schema upgrades to head keeping its rows."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest

from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import current_revision, downgrade, history, upgrade
from semwh.warehouse.readonly import run_sql
from tests.conftest import table_names
from tests.data.make_stored_warehouse import STORED_DIR, add_row_to_every_table
from tests.reliability.conftest import open_wh

pytestmark = pytest.mark.integration


#: The results tables of revisions 0001-0007, views of ``results`` from revision 0008 on.
RESULT_VIEWS = ("results_rsa", "results_2v2", "results_measures")


def _counts(wh: Warehouse) -> dict[str, int]:
    assert wh.duckdb_path is not None
    conn = duckdb.connect(str(wh.duckdb_path), read_only=True)
    try:
        names = [t for t in table_names(conn) if t != "alembic_version"]
        # Tables that revision 0008 turned into views of one ``results`` table keep counting.
        names += [
            r[0]
            for r in conn.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
            if r[0] in RESULT_VIEWS
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def _step_down_and_up(wh: Warehouse, stop: str | None) -> None:
    """Downgrade one revision at a time to ``stop`` and back to head, checking rows."""
    chain = [rev for rev, _, _ in history()]
    start = chain.index(current_revision(wh))  # type: ignore[arg-type]
    lowest = -1 if stop is None else chain.index(stop)
    seen: list[dict[str, int]] = [_counts(wh)]
    for i in range(start, lowest, -1):
        downgrade(wh, chain[i - 1] if i > 0 else "base")
        now = _counts(wh)
        # Tables that survive a downgrade keep every row.
        assert {t: n for t, n in seen[-1].items() if t in now} == now
        seen.append(now)
    kept = set(seen[-1])  # tables that no downgrade dropped keep their rows; others return empty
    # ... except the sweeps an upgrade carries out of the sweep analysis runs that stay, and
    # the results revision 0008 moves out of the results tables that stay.
    derived = {"sweeps", "sweep_members", "results"}
    for i in range(lowest + 1, start + 1):
        upgrade(wh, chain[i])
        now = _counts(wh)
        before = {t: n if t in kept else 0 for t, n in seen[start - i].items() if t not in derived}
        assert {t: n for t, n in now.items() if t in before} == before, chain[i]


def test_each_revision_round_trips_with_data(tmp_path: Path) -> None:
    wh = open_wh(tmp_path / "wh")
    wh.root.mkdir()
    upgrade(wh, "head")
    with wh.session() as session:
        added = add_row_to_every_table(session)
    assert all(_counts(wh)[t] >= n for t, n in added.items())
    base_chain = [rev for rev, _, _ in history()]
    # Down and up one step at a time; below the first revision no table remains.
    _step_down_and_up(wh, base_chain[0])
    downgrade(wh, "base")
    assert _counts(wh) == {}
    upgrade(wh, "head")
    assert set(_counts(wh)) >= set(added)


@pytest.mark.parametrize(
    "stored", sorted(STORED_DIR.glob("*.duckdb.gz")), ids=lambda p: p.name.split(".")[0]
)
def test_stored_warehouse_upgrades_to_head_keeping_rows(tmp_path: Path, stored: Path) -> None:
    wh = open_wh(tmp_path / "wh")
    wh.root.mkdir()
    assert wh.duckdb_path is not None
    with gzip.open(stored, "rb") as src, open(wh.duckdb_path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    revision = stored.name.split(".")[0]
    assert current_revision(wh) == revision
    before = _counts(wh)
    assert sum(before.values()) > 0, "a stored warehouse must hold rows"
    upgrade(wh, "head")
    after = _counts(wh)
    assert {t: n for t, n in after.items() if t in before} == before
    _step_down_and_up(wh, revision)
    assert _counts(wh) == after
    # And it reads through the public read path.
    result = run_sql(wh, "SELECT count(*) FROM concepts")
    assert result.rows() == [(before["concepts"],)]
