"""What the tests build by hand: registry rows (one factory a kind of row, each value
overridable) and the fixtures of a module whose tests share one built warehouse.

Each row factory fills the columns a test does not care about with fixed values and takes any
column as a keyword; the row-adding ones add the row to the caller's session and flush it, so
that its ID can be read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import AnalysisRun, Sweep, SweepMember
from tests.conftest import copy_warehouse, migrated_warehouse


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


def warehouse_fixtures(build: Callable[[Warehouse], Any], world: str = "world") -> tuple[Any, ...]:
    """The fixtures of a module whose tests share one built warehouse: ``template`` (one
    migrated warehouse with ``build``'s rows, made once per module: its folder and what
    ``build`` returned), ``warehouse`` (a private copy of it for each test) and ``world`` (named
    by ``world``: what ``build`` returned)."""

    @pytest.fixture(scope="module", name="template")
    def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
        root = tmp_path_factory.mktemp("template") / "wh"
        return root, build(migrated_warehouse(root))

    @pytest.fixture(name="warehouse")
    def warehouse(template: tuple[Path, Any], tmp_path: Path) -> Warehouse:
        return copy_warehouse(template[0], tmp_path / "wh")

    @pytest.fixture(name=world)
    def built(template: tuple[Path, Any]) -> Any:
        return template[1]

    return template, warehouse, built
