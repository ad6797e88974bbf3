# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Refusals and options of the measures commands, through the installed command where the
command's own wiring is what is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.warehouse.layout import Warehouse
from tests.conftest import run_cli
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    template,
    warehouse,
    world,
)

pytestmark = pytest.mark.integration


def cli(wh: Warehouse, *args: str, check: bool = True):
    return run_cli("--warehouse", str(wh.root), *args, check=check)


def refused(proc, *parts: str) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    for part in parts:
        assert part in proc.stderr, proc.stderr


def test_report_heatmap_is_drawn_without_a_sweep_and_checked(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    refused(
        cli(warehouse, "report", str(tmp_path / "a"), "--heatmap", "nosuch", check=False),
        "unknown space 'nosuch'",
    )
    refused(
        cli(warehouse, "report", str(tmp_path / "b"), "--heatmap", "words:euclid", check=False),
        "unknown similarity metric 'euclid'",
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    cli(warehouse, "report", str(tmp_path / "c"), "--heatmap", "words:cosine")
    assert (tmp_path / "c" / "figures" / "heatmap_words_cosine.svg").is_file()
    assert "words: cosine similarity" in (tmp_path / "c" / "report.html").read_text()
