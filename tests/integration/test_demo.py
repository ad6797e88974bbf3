"""`semwh demo` outside the source tree: it names exactly what it needs instead of failing
somewhere inside. (The demo's run itself is tested on a reduced configuration in
test_pipeline.py; a full run is measured by hand.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.warehouse.layout import Warehouse
from semwh.workflow.demo import CURVE_TABLE_COLUMNS, curve_table
from tests.conftest import run_cli
from tests.integration.test_query_data import build_synthetic

pytestmark = pytest.mark.integration


def test_demo_without_images_says_what_it_needs(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    proc = run_cli(
        "--warehouse", str(tmp_path / "wh"), "demo", "--images", str(missing), check=False
    )
    assert proc.returncode == 1
    assert f"--images {missing} is not a folder" in proc.stderr
    assert not (tmp_path / "wh").exists()


def test_demo_table_is_the_layer_curves_query(warehouse: Warehouse) -> None:
    build_synthetic(warehouse)
    table = curve_table(warehouse, "words")
    assert table.column_names == CURVE_TABLE_COLUMNS
    rows = table.to_pylist()
    assert [r["layer"] for r in rows if r["model"] == "toy"] == ["l0", "l1", "l2", "l3"]
