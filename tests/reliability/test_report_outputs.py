"""Report outputs: a run file's report folder follows the rule of `semwh report --out`, and
figure files are named one per space, however alike two space names clean up."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.errors import OutputError
from semwh.results.report.figures import curve_figures
from semwh.workflow.pipeline import run_pipeline
from semwh.workflow.runfile import parse_config
from semwh.workflow.stages import RUN_REPORT_MARK, check_report_folder
from tests.reliability.conftest import open_wh

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, out: str):  # noqa: ANN202
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    data = {
        "images": {"folder": str(images)},
        "words": [{"name": "words", "file": str(tmp_path / "words.txt")}],
        "models": [],
        "report": {"out": out},
    }
    return parse_config(data, tmp_path)


@pytest.mark.parametrize("out", [".", "vectors", "tmp/r", "registry.duckdb"])
def test_a_run_report_never_lands_on_the_warehouse_itself(tmp_path: Path, out: str) -> None:
    wh = open_wh(tmp_path / "wh")
    with pytest.raises(OutputError, match=r"\[report\] out = .*name a subfolder of its own"):
        run_pipeline(wh, _config(tmp_path, out))
    # Refused before any work: no warehouse was even created.
    assert not wh.root.exists()
    with pytest.raises(OutputError):
        check_report_folder(wh, _config(tmp_path, out), force=True)


def test_a_run_report_replaces_only_a_run_report_without_force(tmp_path: Path) -> None:
    wh = open_wh(tmp_path / "wh")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("the user's own page")
    config = _config(tmp_path, str(mine))
    with pytest.raises(OutputError, match=r"already holds files that no run wrote; pass --force"):
        run_pipeline(wh, config)
    assert (mine / "report.html").read_text() == "the user's own page"
    assert check_report_folder(wh, config, force=True) == mine.resolve()
    # A folder that holds a run's report (and a new or empty one) is the run's to replace.
    (mine / RUN_REPORT_MARK).write_text("")
    assert check_report_folder(wh, config) == mine.resolve()
    assert check_report_folder(wh, _config(tmp_path, "report")) == (wh.root / "report").resolve()
    # Given as an absolute path, the warehouse's own folders are refused alike.
    with pytest.raises(OutputError, match="the warehouse folder itself"):
        check_report_folder(wh, _config(tmp_path, str(wh.root)), force=True)


def test_spaces_whose_names_clean_up_alike_get_their_own_figures(tmp_path: Path) -> None:
    names = ["a b", "a*b?", "a_b", "A_B", "txt_layers", "txt/0", "txt/1"]
    rows = [
        {"model": "m", "layer": f"l{k}", "relative_depth": k / 2, "word_space": name,
         "accuracy_2v2": 0.5 + 0.1 * k + 0.01 * i, "p_fdr_2v2": 0.01}
        for i, name in enumerate(names)
        for k in range(3)
    ]  # fmt: skip
    figures = curve_figures(rows, [], 0.05, tmp_path / "figures")
    # The layers of text model txt share one figure; every other space has its own.
    titles = [*sorted(names[:5]), "the layers of txt"]
    assert len(figures) == len(titles)
    assert len({f.png_path for f in figures}) == len({f.svg_path for f in figures}) == len(titles)
    for title, figure in zip(sorted(titles), sorted(figures, key=lambda f: f.title), strict=True):
        # Each file is its own space's figure, titled with the exact name.
        assert figure.title.endswith(f"against {title}")
        assert figure.png_path.read_bytes() == figure.png
    # A name that is already a safe file name stays readable.
    assert (tmp_path / "figures" / "2v2_a_b.png").is_file()
