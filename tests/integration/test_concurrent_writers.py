"""Many writers at once on one PostgreSQL registry: two sweeps over some of the same
comparisons and an ingest, each its own process, lose no row, store no result twice and leave
each sweep's family whole, with the statistics of the same sweep on a DuckDB registry (to
1e-12).

The test holds the registry's results lock while the sweeps run, so both compute the same
comparisons and both must wait for it (and say so); once it is released, one stores its
results and the other finds them instead of adding its own.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from semwh import runs
from semwh.extract.rows import with_busy_retry
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import init_warehouse
from semwh.warehouse.models import Concept
from semwh.warehouse.writers import RESULTS_LOCK, transaction
from tests.conftest import migrated_warehouse
from tests.forkserver import Child, shared_server
from tests.integration.test_analyze import N_CONCEPTS, build_world, wnids

pytestmark = pytest.mark.integration

#: The two sweeps: every layer of both models with both tests, and RSA of the trained model
#: only (four of the same comparisons, a family of its own).
SWEEP = ("analyze", "sweep", "--models", "toy", "--words", "words", "-n", "20", "--seed", "3")
FULL, RSA_ONLY = SWEEP, (*SWEEP, "--tests", "rsa", "--no-random")


def _spawn(wh: Warehouse, *args: str) -> Child:
    """``semwh ARGS`` on ``wh``, a separate process forked from the tests' fork server."""
    server = shared_server(Path(tempfile.gettempdir()) / f"semwh-tests-{os.getpid()}")
    return server.spawn("--warehouse", str(wh.root), "--db", wh.db_url, *args)


def _waiting(conn: sa.Connection) -> int:
    """How many sessions wait for an advisory lock."""
    count = conn.execute(
        sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
    ).scalar()
    conn.commit()
    return int(count or 0)


def _rows(wh: Warehouse, sql: str) -> list[tuple]:
    with wh.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql)).fetchall()]


def test_two_sweeps_and_an_ingest_at_once(postgres_url: str, tmp_path: Path) -> None:
    wh = Warehouse(root=tmp_path / "pg", db_url=postgres_url)
    init_warehouse(wh)
    build_world(wh)
    with wh.session() as session:  # the concepts the ingested space is keyed by
        session.add_all(Concept(concept=c, name=c, origin="test") for c in wnids())

    with wh.engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": RESULTS_LOCK})
        holder.commit()
        words2 = tmp_path / "words2.csv"
        vectors = np.random.default_rng(5).normal(size=(N_CONCEPTS, 7))
        words2.write_text(
            "concept,"
            + ",".join(f"d{i}" for i in range(7))
            + "\n"
            + "".join(
                f"{c}," + ",".join(map(str, v)) + "\n"
                for c, v in zip(wnids(), vectors, strict=True)
            )
        )
        procs = [
            _spawn(wh, *FULL),
            _spawn(wh, *RSA_ONLY),
            _spawn(wh, "ingest", "space", "words2", str(words2)),
        ]
        # Meanwhile, the same sweep on a DuckDB registry, for its statistics.
        reference = migrated_warehouse(tmp_path / "duck")
        build_world(reference)
        expected = runs.sweep(reference, ["toy"], ["words"], permutations=20, seed=3)
        deadline = time.monotonic() + 240
        server = shared_server(Path(tempfile.gettempdir()) / f"semwh-tests-{os.getpid()}")
        while _waiting(holder) < 2:
            assert time.monotonic() < deadline, "the sweeps did not both wait for the lock"
            for proc in procs[:2]:
                assert server.wait(proc, timeout=0) is None, proc.stderr[-3000:]
            time.sleep(0.2)
        holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": RESULTS_LOCK})
        holder.commit()
    for proc in procs:
        assert server.wait(proc, timeout=240) == 0, proc.stderr[-3000:]
    # Each sweep said in one line that it waited for another writer.
    for proc in procs[:2]:
        waits = [line for line in proc.stderr.splitlines() if "waiting for another" in line]
        assert len(waits) == 1, proc.stderr

    # One row per comparison: 2 models x 4 layers x (2v2, rsa), none stored twice.
    keys = _rows(
        wh,
        "SELECT measure, space_a, space_b, seed, options_sha256, count(*) FROM results "
        "GROUP BY 1, 2, 3, 4, 5",
    )
    assert len(keys) == 16 and all(row[-1] == 1 for row in keys)
    # Both families whole, each over its own members, the shared ones listed by both.
    results = {row[0]: row[1:] for row in _rows(wh, "SELECT result_id, measure FROM results")}
    sweeps = _rows(wh, "SELECT sweep_id, status, n_tests FROM sweeps ORDER BY n_tests")
    assert [(status, n) for _, status, n in sweeps] == [("complete", 4), ("complete", 16)]
    members = {
        n: _rows(wh, f"SELECT test, result_id FROM sweep_members WHERE sweep_id = {sweep_id}")
        for sweep_id, _, n in sweeps
    }
    assert len(members[16]) == 16 and {r for _, r in members[16]} == set(results)
    assert len(members[4]) == 4 and {r for _, r in members[4]} <= set(results)
    assert all(results[r] == ("rsa",) for _, r in members[4])
    # The ingest landed whole beside them.
    assert _rows(wh, "SELECT count(*) FROM spaces WHERE name = 'words2'") == [(1,)]
    assert (
        _rows(
            wh,
            "SELECT count(*) FROM vector_files AS f JOIN spaces AS s ON s.space_id = f.space_id "
            "WHERE s.name = 'words2'",
        )[0][0]
        >= 1
    )

    # The same statistics and p-values as the sweep on a DuckDB registry.
    want = {
        (runs.result_rows.test_of(r), r.space_a, r.space_b): (r.statistic, r.p_value)
        for r in expected.rows
    }
    got = {
        (measure, a, b): (statistic, p)
        for measure, a, b, statistic, p in _rows(
            wh, "SELECT measure, space_a, space_b, statistic, p_value FROM results"
        )
    }
    assert got.keys() == want.keys()
    for key, (statistic, p) in want.items():
        assert got[key][0] == pytest.approx(statistic, abs=1e-12)
        assert got[key][1] == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("runner", ["transaction", "with_busy_retry"])
def test_a_deadlocked_writer_runs_again_and_says_so(
    postgres_url: str, tmp_path: Path, runner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A real deadlock with another session: the writer the server rolls back runs its
    transaction again from the start and succeeds, saying so in one line."""
    wh = Warehouse(root=tmp_path, db_url=postgres_url)
    with wh.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('a', 0), ('b', 0)"))
    holds_a, other_waits = threading.Event(), threading.Event()
    attempts: list[int] = []

    def work(session: Session) -> None:
        attempts.append(1)
        # The other session waits longer before it looks for deadlocks: this one is rolled back.
        session.execute(sa.text("SET LOCAL deadlock_timeout = '100ms'"))
        session.execute(sa.text("UPDATE t SET v = v + 1 WHERE k = 'a'"))
        holds_a.set()
        assert other_waits.wait(30)
        session.execute(sa.text("UPDATE t SET v = v + 1 WHERE k = 'b'"))

    def run() -> None:
        if runner == "transaction":
            transaction(wh, work, what="test writer")
        else:

            def register() -> None:
                with wh.session() as session:
                    work(session)

            with_busy_retry(register)

    with wh.engine.connect() as other, caplog.at_level(logging.WARNING, logger="semwh"):
        other.execute(sa.text("SET deadlock_timeout = '10s'"))
        other.execute(sa.text("UPDATE t SET v = v + 10 WHERE k = 'b'"))
        writer = threading.Thread(target=run)
        writer.start()
        assert holds_a.wait(30)

        def take_a() -> None:
            other.execute(sa.text("UPDATE t SET v = v + 10 WHERE k = 'a'"))
            other.commit()

        taker = threading.Thread(target=take_a)
        taker.start()
        deadline = time.monotonic() + 30
        with wh.engine.connect() as watch:
            while not watch.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar():
                assert time.monotonic() < deadline
                watch.rollback()
                time.sleep(0.05)
        other_waits.set()  # the writer now asks for 'b': a deadlock
        taker.join(30)
        writer.join(30)
    assert not writer.is_alive() and len(attempts) == 2
    assert _rows(wh, "SELECT k, v FROM t ORDER BY k") == [("a", 11), ("b", 11)]
    lines = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
