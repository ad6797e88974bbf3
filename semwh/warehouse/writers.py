"""Many writers on one registry: transactions that are tried again, and results stored once.

A DuckDB registry admits one writing process at a time, so its writers take turns at the
file. On PostgreSQL several processes (two sweeps, an ingest, the workers of a sharded
extraction) write at once, and three rules keep the registry whole:

* **Every write is one transaction** (:meth:`Warehouse.session`): a family and its FDR, a
  batch of results with their runs and nulls, land together or not at all.
* **A transaction the server gives up on is tried again** (:func:`transaction`): a
  serialisation failure or a deadlock rolls it back whole, so running it again from the start
  is safe; a writer says so in one line on the ``semwh`` logger each time.
* **Results are stored once** (:func:`results_lock`): a writer holds one transaction-level
  advisory lock while it checks which of its comparisons another process stored meanwhile and
  adds the rest. Two sweeps that compute the same comparison (same inputs, options and seed)
  keep one row; the second finds it and lists it in its family. A writer that must wait for
  the lock says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from semwh.warehouse.layout import Warehouse

T = TypeVar("T")

log = logging.getLogger("semwh")

#: How often a transaction is run in all when the server keeps giving up on it.
ATTEMPTS = 6
#: The first pause before trying again (seconds); it doubles each time.
FIRST_PAUSE = 0.05
#: SQLSTATEs of a transaction the server rolled back that can simply run again:
#: serialization_failure and deadlock_detected.
RETRYABLE = frozenset({"40001", "40P01"})
#: The advisory lock held while results are checked and stored ("semwh" in ASCII).
RESULTS_LOCK = 0x73656D7768


def _sqlstate(exc: BaseException) -> str | None:
    while exc is not None:
        if isinstance(exc, DBAPIError):
            orig = exc.orig
            return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        exc = exc.__cause__  # type: ignore[assignment]
    return None


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a serialisation failure or deadlock (the transaction can rerun)."""
    return _sqlstate(exc) in RETRYABLE


def transaction(wh: Warehouse, work: Callable[[Session], T], *, what: str) -> T:
    """Run ``work`` in one registry transaction, again from the start (up to
    :data:`ATTEMPTS` times) when the server rolls it back for a serialisation failure or a
    deadlock. ``work`` must do nothing outside the registry that a second run would repeat.

    Raises:
        Whatever ``work`` raises; the last serialisation failure after the last attempt.
    """
    pause = FIRST_PAUSE
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with wh.session() as session:
                return work(session)
        except Exception as exc:
            if attempt == ATTEMPTS or not is_retryable(exc):
                raise
            log.warning(
                "%s: another writer's transaction conflicted with this one (%s); "
                "trying again in %.2f s (attempt %d of %d)",
                what,
                _sqlstate(exc),
                pause,
                attempt + 1,
                ATTEMPTS,
            )
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def results_lock(session: Session, what: str) -> None:
    """Hold the registry's results lock until this transaction ends (PostgreSQL; a DuckDB or
    SQLite registry has one writer at a time already). Says so when it must wait."""
    if session.get_bind().dialect.name != "postgresql":
        return
    got = session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RESULTS_LOCK})
    if got.scalar():
        return
    log.warning("%s: waiting for another process that is storing results", what)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RESULTS_LOCK})


__all__ = ["ATTEMPTS", "RETRYABLE", "is_retryable", "results_lock", "transaction"]
