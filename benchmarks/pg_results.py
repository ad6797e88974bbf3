"""Storing results on a PostgreSQL registry (run: .venv/bin/python benchmarks/pg_results.py).

Starts a throwaway PostgreSQL server on a unix socket (the tests' :mod:`tests.postgres`),
creates a warehouse on it, and stores N (default 2,000) RSA results with 100-value
permutation nulls three ways, each into a fresh database:

  * per record: one transaction per 64 records (a sweep's batch), each record's run, result
    and null flushed on their own (how results were stored before batching);
  * batched: :func:`semwh.runs.comparison.store_records` per 64 records, as a sweep stores
    them (results lock, the check for rows another process stored, each table's rows of the
    batch in one statement);
  * one batch: :func:`store_records` of all N at once.

The target: 2,000 result rows in under 10 s on the loopback server.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from semwh.runs.comparison import plan_stored, save_in, store_records, with_seed  # noqa: E402
from semwh.runs.options import ComparisonOptions  # noqa: E402
from semwh.runs.records import ResultRecord  # noqa: E402
from semwh.warehouse.layout import Warehouse  # noqa: E402
from semwh.warehouse.migrate import init_warehouse  # noqa: E402
from tests.integration.test_analyze import build_world  # noqa: E402
from tests.postgres import PostgresServer, running_postgres_server  # noqa: E402

BATCH = 64


def records(wh: Warehouse, n: int) -> list[ResultRecord]:
    """N records of distinct seeds over two stored spaces (numbers drawn, not computed)."""
    options = ComparisonOptions.make("rsa", permutations=100, seed=0)
    spec = plan_stored(wh, "toy/block0", "words", options)
    rng = np.random.default_rng(0)
    out = []
    for seed in range(n):
        null = rng.normal(scale=0.1, size=100)
        out.append(
            ResultRecord(
                spec=with_seed(spec, seed + 1),
                statistic=float(rng.uniform(-1, 1)),
                p_value=float(rng.uniform()),
                null=null,
            )
        )
    return out


def per_record(wh: Warehouse, batch: Sequence[ResultRecord]) -> None:
    with wh.session() as session:
        for record in batch:
            save_in(session, record)


def batched(wh: Warehouse, batch: Sequence[ResultRecord]) -> None:
    store_records(wh, batch)


def timed(
    server: PostgresServer,
    n: int,
    store: Callable[[Warehouse, Sequence[ResultRecord]], None],
    size: int,
) -> float:
    url = server.create_database()
    wh = Warehouse(root=Path(tempfile.mkdtemp(prefix="semwh-bench-")), db_url=url)
    init_warehouse(wh)
    build_world(wh)
    todo = records(wh, n)
    start = time.perf_counter()
    for i in range(0, n, size):
        store(wh, todo[i : i + size])
    seconds = time.perf_counter() - start
    with wh.engine.connect() as conn:
        from sqlalchemy import text

        stored = conn.execute(text("SELECT count(*) FROM results")).scalar()
    assert stored == n, stored
    wh.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="result rows to store")
    args = parser.parse_args()
    with running_postgres_server() as server:
        for name, store, size in (
            ("per record, 64 a transaction", per_record, BATCH),
            ("batched, 64 a transaction", batched, BATCH),
            ("batched, all in one", batched, args.n),
        ):
            seconds = timed(server, args.n, store, size)
            print(
                f"{name:32s} {args.n} rows in {seconds:6.2f} s "
                f"({args.n / seconds:7.0f} rows/s; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
