"""Sweeps as stored families of tests: the one place that writes ``sweeps`` and their members.

A sweep is opened (status ``running``) before it computes anything and closed in one
transaction that writes its members, the Benjamini-Hochberg FDR over all of their p-values
(RSA, 2 vs 2, the measures, recovery and differences together) and its status ``complete``.
Nothing changes a closed sweep afterwards: later sweeps, single analyses and ``--force`` add
rows of their own.

The family rule lives here: a stored result joins a family as :func:`member` (its test
name, result id and uncorrected p-value); the members with a p-value are the tests of the
family, each counted once, and :func:`family_fdr` applies
:func:`semwh.analyze.fdr.benjamini_hochberg` to them; a result table reads each row's
``p_fdr`` back with :func:`p_fdr_of`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from semwh.analyze import benjamini_hochberg
from semwh.errors import NotFoundError
from semwh.runs.provenance import canonical_json, params_sha256
from semwh.warehouse.models import (
    Result,
    ResultDiff,
    ResultRecovery,
    Sweep,
    SweepMember,
)
from semwh.warehouse.storage import pid_alive

RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"


#: A family's Benjamini-Hochberg p-value of each member, by (test, result_id); None for a
#: member without a p-value.
FDR = dict[tuple[str, int], float | None]


@dataclass(frozen=True)
class Member:
    """One test of a family: which result, and its uncorrected p-value."""

    test: str
    result_id: int
    p_value: float | None


def member_test(row: Any) -> str:
    """The test a stored result is known by in families: the measure of a ``results`` row
    (``rsa``, ``2v2``, ``cka``, ``knn``, ``reg2v2``, ...), ``recovery`` or ``diff``."""
    if isinstance(row, Result):
        return row.measure
    if isinstance(row, ResultRecovery):
        return "recovery"
    if isinstance(row, ResultDiff):
        return "diff"
    raise TypeError(f"a {type(row).__name__} is not a stored result that joins a family")


def member(row: Any) -> Member:
    """A stored result (comparison, measure, recovery layer or difference) as a member."""
    return Member(member_test(row), row.result_id, row.p_value)


def p_fdr_of(fdr: Mapping[tuple[str, int], float | None] | None, row: Any) -> float | None:
    """A stored result's p_fdr in a family's ``fdr``; None outside it or without a family."""
    return None if fdr is None else fdr.get((member_test(row), row.result_id))


def open_sweep(
    session: Session,
    *,
    models: Sequence[str],
    word_spaces: Sequence[str],
    tests: Sequence[str],
    n_permutations: int,
    seed: int | None,
    params: dict[str, Any],
) -> Sweep:
    """Add a ``running`` sweep; ``params`` (its options) are stored with their hash.

    Sweeps left ``running`` by a process of this host that no longer exists (a killed sweep)
    are removed first: they list no members and never will, so a rerun after a kill leaves
    exactly the rows of a sweep that was never interrupted.
    """
    identity = params_sha256(params)
    removed = _remove_abandoned(session)
    # A rerun after a kill takes the id of the killed run of the same family: its rows (and
    # the sweep id recorded in its parameters) are those of a run never interrupted.
    same = sorted(sweep_id for sweep_id, sha in removed if sha == identity)
    sweep = Sweep(
        **({"sweep_id": same[0]} if same else {}),
        models=json.dumps(list(models)),
        word_spaces=json.dumps(list(word_spaces)),
        tests=json.dumps(list(tests)),
        n_permutations=n_permutations,
        seed=seed,
        n_tests=0,
        status=RUNNING,
        params=canonical_json({**params, "identity_sha256": identity}),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    session.add(sweep)
    session.flush()
    return sweep


def remove_abandoned(session: Session) -> int:
    """Remove the running sweeps (never members) whose process on this host is gone."""
    return len(_remove_abandoned(session))


def _remove_abandoned(session: Session) -> list[tuple[int, str | None]]:
    """:func:`remove_abandoned`, returning each removed sweep's id and identity hash."""
    host = socket.gethostname()
    removed: list[tuple[int, str | None]] = []
    for sweep in session.scalars(select(Sweep).where(Sweep.status == RUNNING)).all():
        pid = int(sweep.pid or 0)
        if sweep.host == host and (pid <= 0 or not pid_alive(pid)):
            identity = json.loads(sweep.params or "{}").get("identity_sha256")
            removed.append((int(sweep.sweep_id), identity))
            session.execute(delete(SweepMember).where(SweepMember.sweep_id == sweep.sweep_id))
            session.delete(sweep)
    session.flush()
    return removed


def family_fdr(members: Sequence[Member]) -> FDR:
    """Benjamini-Hochberg over the members with a p-value; None for the others."""
    tested = [(m, m.p_value) for m in members if m.p_value is not None]
    adjusted = benjamini_hochberg([float(p) for _, p in tested])
    out: FDR = {(m.test, m.result_id): None for m in members}
    for (tested_member, _), p_fdr in zip(tested, adjusted, strict=True):
        out[(tested_member.test, tested_member.result_id)] = float(p_fdr)
    return out


def close_sweep(
    session: Session,
    sweep_id: int,
    members: Sequence[Member],
    *,
    analysis_id: int | None,
    extra_params: dict[str, Any] | None = None,
) -> FDR:
    """Write the family and its FDR, mark the sweep complete; returns the FDR by member."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(f"no sweep {sweep_id}")
    unique = list({(m.test, m.result_id): m for m in members}.values())
    fdr = family_fdr(unique)
    for item in unique:
        session.add(
            SweepMember(
                sweep_id=sweep_id,
                test=item.test,
                result_id=item.result_id,
                p_fdr=fdr[(item.test, item.result_id)],
            )
        )
    if extra_params:
        sweep.params = canonical_json({**json.loads(sweep.params), **extra_params})
    sweep.n_tests = sum(1 for m in unique if m.p_value is not None)
    sweep.status = COMPLETE
    sweep.finished_at = datetime.utcnow()
    sweep.analysis_id = analysis_id
    session.flush()
    return fdr


def fail_sweep(session: Session, sweep_id: int) -> None:
    """Mark a sweep that stopped with an error; it lists no members."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is not None and sweep.status == RUNNING:
        sweep.status = FAILED
        sweep.finished_at = datetime.utcnow()


@contextmanager
def failed_on_error(wh: Any, sweep_id: int) -> Iterator[None]:
    """Mark the opened sweep ``sweep_id`` failed when the block raises (its family was never
    written: nobody reads it as current), then let the error through."""
    try:
        yield
    except BaseException:
        with wh.session() as session:
            fail_sweep(session, sweep_id)
        raise


def discard_sweep(session: Session, sweep_id: int) -> None:
    """Remove a sweep that was opened but turned out to repeat a stored one exactly."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is not None and sweep.status == RUNNING:
        session.delete(sweep)


def members_of(session: Session, sweep_id: int) -> list[SweepMember]:
    """The members of sweep ``sweep_id``, ordered by test and result id."""
    return list(
        session.scalars(
            select(SweepMember)
            .where(SweepMember.sweep_id == sweep_id)
            .order_by(SweepMember.test, SweepMember.result_id)
        ).all()
    )


def same_family(session: Session, identity_sha256: str, members: Sequence[Member]) -> Sweep | None:
    """The newest complete sweep of the same options whose members are exactly ``members``."""
    wanted = {(m.test, m.result_id) for m in members}
    candidates = session.scalars(
        select(Sweep).where(Sweep.status == COMPLETE).order_by(Sweep.sweep_id.desc())
    ).all()
    for sweep in candidates:
        if json.loads(sweep.params).get("identity_sha256") != identity_sha256:
            continue
        stored = {(m.test, m.result_id) for m in members_of(session, sweep.sweep_id)}
        return sweep if stored == wanted else None
    return None


def sweep_fdr(session: Session, sweep_id: int) -> FDR:
    """The p_fdr a stored sweep gave each of its members."""
    return {(m.test, m.result_id): m.p_fdr for m in members_of(session, sweep_id)}
