"""Registry rows the tests build by hand: one factory a kind of row, each value overridable.

Each factory fills the columns a test does not care about with fixed values and takes any
column as a keyword; the row-adding ones add the row to the caller's session and flush it, so
that its ID can be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from semwh.warehouse.models import AnalysisRun, Sweep, SweepMember


def add_analysis_run(session: Session, **values: Any) -> AnalysisRun:
    """An analysis run (a sweep's, with empty parameters and versions unless given)."""
    run = AnalysisRun(
        **{
            "kind": "sweep",
            "params": "{}",
            "params_sha256": "0" * 64,
            "semwh_version": "0",
            "library_versions": "{}",
            "input_hashes": "{}",
            **values,
        }
    )
    session.add(run)
    session.flush()
    return run


def comparison(analysis_id: int, **values: Any) -> dict[str, Any]:
    """The columns every comparison result (``ResultRSA``, ``Result2v2``) shares."""
    return {
        "analysis_id": analysis_id,
        "space_a": "resnet50/layer1.0",
        "space_b": "glove",
        "n_concepts": 10,
        "concepts_sha256": "1" * 64,
        "similarity": "pearson",
        "n_permutations": 100,
        "seed": 7,
        **values,
    }


def add_sweep(
    session: Session, members: Sequence[tuple[str, int, float | None]] = (), **values: Any
) -> Sweep:
    """A finished sweep over no models unless given, with its ``(test, result_id, p_fdr)``
    members."""
    sweep = Sweep(
        **{
            "models": "[]",
            "word_spaces": "[]",
            "tests": "[]",
            "n_permutations": 100,
            "n_tests": len(members),
            "status": "complete",
            "params": "{}",
            **values,
        }
    )
    session.add(sweep)
    session.flush()
    for test, result_id, p_fdr in members:
        session.add(
            SweepMember(sweep_id=sweep.sweep_id, test=test, result_id=result_id, p_fdr=p_fdr)
        )
    return sweep
