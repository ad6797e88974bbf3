"""The report: figures from named queries, a self-contained HTML page that renders in Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from semwh.errors import NotFoundError
from semwh.results.report import build_report, report_data
from semwh.warehouse.layout import Warehouse
from tests.conftest import run_cli
from tests.integration.test_query_data import build_synthetic

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium chromium-driver); "
        "the browser rendering check cannot run"
    )


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after load, as headless Chromium renders it."""
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_report_renders_in_headless_chromium_with_its_figures(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    build_synthetic(warehouse)
    info = build_report(warehouse, tmp_path / "report")
    names = sorted(p.name for p in info.figures)
    assert names == sorted(
        f"{k}_words.{ext}" for k in ("2v2", "rsa", "recovery") for ext in ("png", "svg")
    )
    for path in info.figures:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC) and len(data) > 5000
        else:
            assert b"<svg" in data[:2000]

    page = info.html.read_text()
    # Self-contained: every image is a data URI, nothing is fetched from elsewhere.
    sources = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(sources) == 3
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in page and "https://" not in page
    # Key tables: the peak layer of the trained model and its first significant layer.
    assert "<h2>Peak layer per model and word space</h2>" in page
    assert re.search(r"<td>toy</td><td>words</td><td>4</td><td>l2</td>", page)

    dom = dump_dom(info.html, tmp_path / "chromium-profile")
    assert 'data-figures="3/3"' in dom, dom[:500]


def test_report_data_comes_from_the_named_queries(warehouse: Warehouse) -> None:
    build_synthetic(warehouse)
    data = report_data(warehouse, alpha=0.0015)
    assert {r["model"] for r in data.curves} == {"toy", "toy-random"}
    first = {r["model"]: r["first_layer"] for r in data.first_significant}
    assert first == {"toy": "l2", "toy-random": None}
    assert [r["layer"] for r in data.recovery] == ["l0", "l1", "l2", "l3"]


def test_report_of_an_empty_warehouse_says_what_to_run(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="semwh analyze sweep"):
        build_report(warehouse, tmp_path / "r")
    proc = run_cli("--warehouse", str(warehouse.root), "report", str(tmp_path / "r"), check=False)
    assert proc.returncode == 1 and "no layer-curve results" in proc.stderr
