"""The migration runner: revisions, schema checks and their messages, failures as SemwhError."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from semwh.errors import SchemaMismatchError, WarehouseError
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.migrate import (
    check_revision,
    current_revision,
    downgrade,
    head_revision,
    history,
    init_warehouse,
    known_revisions,
    upgrade,
)

UNKNOWN = "ffff9999"


def _set_revision(wh: Warehouse, revision: str) -> None:
    with wh.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_history_runs_from_base_to_head() -> None:
    revs = history()
    assert revs[0][1] is None
    assert revs[-1][0] == head_revision()
    for (rev, _, _), (_, down, _) in zip(revs, revs[1:], strict=False):
        assert down == rev
    assert {rev for rev, _, _ in revs} == known_revisions()
    assert all(message for _, _, message in revs)


def test_fresh_warehouse_is_at_head(warehouse: Warehouse) -> None:
    assert current_revision(warehouse) == head_revision()
    check_revision(warehouse)


def test_no_schema_names_both_revisions_and_the_command(warehouse: Warehouse) -> None:
    downgrade(warehouse, "base")
    assert current_revision(warehouse) is None
    with pytest.raises(SchemaMismatchError) as info:
        check_revision(warehouse)
    message = str(info.value)
    assert "revision none" in message
    assert f"expects {head_revision()}" in message
    assert f"semwh --warehouse {warehouse.root} db upgrade" in message


def test_unknown_revision_is_reported_as_newer(warehouse: Warehouse) -> None:
    _set_revision(warehouse, UNKNOWN)
    with pytest.raises(SchemaMismatchError) as info:
        check_revision(warehouse)
    message = str(info.value)
    assert UNKNOWN in message and head_revision() in message
    assert "newer semwh" in message


@pytest.mark.parametrize("action", ["upgrade", "downgrade", "init"])
def test_migrating_from_an_unknown_revision_refuses_cleanly(
    warehouse: Warehouse, action: str
) -> None:
    _set_revision(warehouse, UNKNOWN)
    with pytest.raises(SchemaMismatchError, match=UNKNOWN):
        if action == "upgrade":
            upgrade(warehouse)
        elif action == "downgrade":
            downgrade(warehouse, "base")
        else:
            init_warehouse(warehouse)
    assert current_revision(warehouse) == UNKNOWN


def test_unknown_downgrade_target_lists_the_choices(warehouse: Warehouse) -> None:
    choices = ", ".join(rev for rev, _, _ in history())
    with pytest.raises(WarehouseError, match=re.escape(f"one of: {choices})")):
        downgrade(warehouse, "nope")


def test_unknown_upgrade_target_is_a_warehouse_error(warehouse: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="nope"):
        upgrade(warehouse, "nope")


def test_downgrade_below_base_is_a_warehouse_error(warehouse: Warehouse) -> None:
    downgrade(warehouse, "base")
    with pytest.raises(WarehouseError, match="cannot migrate"):
        downgrade(warehouse, "-1")


def test_relative_downgrade_from_head(warehouse: Warehouse) -> None:
    revs = [rev for rev, _, _ in history()]
    expected = revs[-2] if len(revs) > 1 else None
    assert downgrade(warehouse, "-1") == expected
    assert upgrade(warehouse) == head_revision()
