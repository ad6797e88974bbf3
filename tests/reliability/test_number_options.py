"""Levels, probabilities and counts are checked where they enter - command line, named-query
parameters, run files, the Python API - and NaN, infinities and out-of-range values are
refused in one line naming the option and the allowed range."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

import semwh
from semwh.analyze.bootstrap import bootstrap_rsa
from semwh.errors import ConfigError
from semwh.results.named import list_queries
from semwh.validate import LEVEL, check_number, parse_range
from semwh.workflow.runfile import parse_config
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> semwh.SemanticWarehouse:
    return semwh.open(tmp_path_factory.mktemp("numbers") / "wh", create=True)


@pytest.mark.parametrize("alpha", [float("nan"), 2.0, -1.0, 0.0, float("inf")])
def test_report_alpha_outside_0_1_is_refused(
    wh: semwh.SemanticWarehouse, tmp_path: Path, alpha: float
) -> None:
    with pytest.raises(ConfigError, match=r"^alpha must be a number in \(0, 1\), got"):
        wh.report(tmp_path / "out", alpha=alpha)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("query", "params", "words"),
    [
        ("first_significant_depth", {"alpha": "NaN"}, r"alpha must be a number in \(0, 1\)"),
        ("first_significant_depth", {"alpha": float("nan")}, r"alpha must be a number in \(0"),
        ("first_significant_depth", {"alpha": "2"}, r"alpha must be a number in \(0, 1\)"),
        ("grid_cells", {"alpha": "-1"}, r"alpha must be a number in \(0, 1\)"),
        ("model_comparison", {"bins": "0"}, r"bins must be a whole number in \[1, 1000\]"),
        ("model_comparison", {"bins": 10**9}, r"bins must be a whole number in \[1, 1000\]"),
        ("pair_disagreement", {"space_a": "a", "space_b": "b", "top": "0"}, r"top must be 1"),
        ("layer_curves", {"sweep_id": True}, r"sweep_id must be a whole number"),
        # NULL would skip the range: refused where the parameter has a default.
        (
            "first_significant_depth",
            {"alpha": None},
            r"alpha must be a number in \(0, 1\), got NULL",
        ),
        (
            "model_comparison",
            {"bins": None},
            r"bins must be a whole number in \[1, 1000\], got NULL",
        ),
    ],
)
def test_named_query_numbers_are_checked_before_binding(
    wh: semwh.SemanticWarehouse, query: str, params: dict, words: str
) -> None:
    with pytest.raises(ConfigError, match=rf"query '{query}' parameter {words}"):
        wh.query(query, params)


def test_the_command_line_refuses_in_one_line(wh: semwh.SemanticWarehouse, tmp_path: Path):
    for args in (
        ["report", str(tmp_path / "r"), "--alpha", "nan"],
        ["query", "model_comparison", "-p", "bins=0"],
    ):
        proc = run_cli("--warehouse", str(wh.root), *args, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "must be a" in lines[0] and "got" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("section", "text", "words"),
    [
        ("report", "alpha = nan", r"\[report\] alpha must be a number in \(0, 1\), got nan"),
        ("report", "alpha = 1.5", r"\[report\] alpha must be a number in \(0, 1\)"),
        ("analysis", "permutations = -1", r"\[analysis\] permutations must be 0 or more"),
        ("analysis", "seed = -3", r"\[analysis\] seed must be a whole number in \[0, "),
    ],
)
def test_run_file_numbers_are_checked_as_the_file_is_read(
    tmp_path: Path, section: str, text: str, words: str
) -> None:
    data = tomllib.loads(
        f'[images]\nfolder = "."\n[[words]]\nname = "w"\nfile = "w.txt"\n'
        f'[[models]]\nname = "m"\n[{section}]\n{text}\n'
    )
    with pytest.raises(ConfigError, match=words):
        parse_config(data, tmp_path, "run.toml")
    peaks = tomllib.loads(
        '[images]\nfolder = "."\n[[words]]\nname = "w"\nfile = "w.txt"\n[[models]]\n'
        'name = "m"\n[[peaks]]\nmodel = "m"\ntarget = "w"\nbootstrap = 0\n'
    )
    with pytest.raises(ConfigError, match=r"\[peaks #1\] bootstrap must be 1 or more"):
        parse_config(peaks, tmp_path, "run.toml")


def test_analysis_counts_and_levels_refuse_nan() -> None:
    sim = np.corrcoef(np.random.default_rng(0).normal(size=(6, 4)))
    with pytest.raises(ConfigError, match=r"n_bootstrap must be 1 or more"):
        bootstrap_rsa(sim, sim, n_bootstrap=float("nan"), seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"level must be a number in \(0, 1\), got nan"):
        bootstrap_rsa(sim, sim, n_bootstrap=10, level=float("nan"), seed=0)


def test_every_declared_range_parses_and_reads_back() -> None:
    declared = {q.name: q.extra.get("range") for q in list_queries() if q.extra.get("range")}
    assert {"first_significant_depth", "grid_cells", "model_comparison"} <= set(declared)
    assert parse_range("(0, 1)") == LEVEL
    assert check_number(3, "x", parse_range("[1, ]", integer=True)) == 3


def test_counts_beyond_a_registry_column_and_non_real_vectors_are_refused(
    wh: semwh.SemanticWarehouse,
) -> None:
    for count in (2**31, 1e300, 10**40):
        with pytest.raises(ConfigError, match=r"permutations must be at most 2147483647"):
            wh.compare("a", "b", "rsa", permutations=count)
    with pytest.raises(ConfigError, match="k must be an integer of 1 or more, got nan"):
        wh.compare("a", "b", "knn", k=float("nan"))
    from semwh.errors import InputError

    for vectors, words in (
        (np.ones((2, 2)) * 1j, "must be real numbers"),
        (np.array([["x", "y"], ["z", "w"]]), "must be real numbers"),
        (np.ones((0, 3)), "at least one concept"),
    ):
        with pytest.raises(InputError, match=words):
            wh.add_space("bad", [] if len(vectors) == 0 else ["n1", "n2"], vectors)
    # (checked before the concepts are looked up: these vectors are refused whatever they key)


def test_long_names_are_refused_and_figure_names_stay_short() -> None:
    from semwh.errors import InvalidNameError
    from semwh.names import check_name
    from semwh.results.report.figures import slug

    with pytest.raises(InvalidNameError, match="too long"):
        check_name("x" * 245)
    assert len(slug("y" * 190)) <= 91 and slug("y" * 190) != slug("y" * 191)


def test_a_registry_url_is_never_echoed_with_its_password() -> None:
    from semwh.errors import SemwhError
    from semwh.warehouse.layout import check_db_url

    for url in ("postgresql://u:secretpw@host:abc/db", "postgresql://u:secretpw@127.0.0.1:1/db"):
        with pytest.raises(SemwhError) as caught:
            check_db_url(url)
        assert "secretpw" not in str(caught.value)
