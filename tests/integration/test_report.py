"""The report: figures from named queries, a self-contained HTML page that renders in Chromium
at 1400 px without sideways scroll; journal figures (300 dpi PNG, PDF, SVG with text, CSV of
the plotted numbers) with stored intervals and FDR families; RDMs ordered by a concept
attribute, classical MDS and a model's layer x layer matrix."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from semwh.analyze.cka import linear_cka
from semwh.analyze.rsa import rsa
from semwh.analyze.similarity import similarity_matrix
from semwh.errors import ConfigError, DegenerateInputError, NotFoundError, OutputError
from semwh.results.report import build_report, report_data, write_figures
from semwh.results.report.figures import Figure
from semwh.results.report.structure import (
    classical_mds,
    layer_similarity,
    plot_mds,
    space_rdm,
)
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from tests.conftest import migrated_warehouse, run_cli
from tests.factories import warehouse_fixtures
from tests.integration.test_query_data import CURVES, NAMES, WNIDS, build_synthetic

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


WINDOW = 1400


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
            "--hide-scrollbars",
            f"--window-size={WINDOW},900",
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


CATEGORY = dict(
    zip(
        NAMES,
        ["animal", "animal", "vehicle", "vehicle", "food", "food", "furniture", "furniture"],
        strict=True,
    )
)
# The toy model's stored 95% bootstrap intervals: accuracy - 0.05 .. accuracy + 0.04.
CI_BELOW, CI_ABOVE, N_BOOTSTRAP = 0.05, 0.04, 200


def add_intervals_and_categories(wh: Warehouse) -> None:
    """The synthetic warehouse plus a ``category`` column for every concept (the lab's own,
    in ``concepts.attributes``) and stored bootstrap intervals on the toy model's 2 vs 2
    results."""
    with wh.session() as s:
        for wnid, name in zip(WNIDS, NAMES, strict=True):
            s.execute(
                text("UPDATE concepts SET attributes = :a WHERE concept = :c"),
                {"a": json.dumps({"category": CATEGORY[name]}), "c": wnid},
            )
        s.execute(
            text(
                "UPDATE results SET ci_low = statistic - :lo, ci_high = statistic + :hi, "
                "bootstrap = :n WHERE measure = '2v2' AND space_a LIKE 'toy/%' "
                "AND n_permutations = 100"
            ),
            {"lo": CI_BELOW, "hi": CI_ABOVE, "n": N_BOOTSTRAP},
        )


def build_world(wh: Warehouse) -> None:
    build_synthetic(wh)
    add_intervals_and_categories(wh)


template, warehouse, world = warehouse_fixtures(build_world)


def check_figure_files(figure: Figure) -> list[dict[str, str]]:
    """Every file of a figure is what a journal takes; returns the CSV's rows."""
    with Image.open(figure.png_path) as image:
        assert image.format == "PNG"
        assert tuple(round(v) for v in image.info["dpi"]) == (300, 300)
        assert image.width >= 1200  # at least 4 inches wide at 300 dpi
    svg = figure.svg_path.read_text(encoding="utf-8")
    # Text kept as text (svg.fonttype none), not converted to glyph paths.
    assert "<text" in svg and figure.title.split()[0] in svg
    pdf = figure.pdf_path.read_bytes()
    assert pdf.startswith(b"%PDF-") and b"/FontFile2" in pdf and b"/Type3" not in pdf
    with figure.csv_path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    return rows


def test_report_renders_in_headless_chromium_with_its_figures(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    info = build_report(
        warehouse, tmp_path / "report", rdms=["words"], layer_matrices=["toy"], order="category"
    )
    keys = ["2v2_words", "rsa_words", "recovery_words", "rdm_words", "layers_toy_cka"]
    names = sorted(p.name for p in info.figures)
    assert names == sorted(f"{k}.{ext}" for k in keys for ext in ("png", "pdf", "svg", "csv"))
    for path in info.figures:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(PNG_MAGIC) and len(data) > 5000
        elif path.suffix == ".svg":
            assert b"<svg" in data[:2000] and b"<text" in data
        elif path.suffix == ".pdf":
            assert data.startswith(b"%PDF-")
        else:
            assert data.count(b"\n") > 1

    page = info.html.read_text()
    # Self-contained: every image is a data URI, nothing is fetched from elsewhere.
    sources = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert len(sources) == len(keys)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in page and "https://" not in page
    # Every figure is in the page with its caption (the FDR family named) and its files.
    for key in keys:
        assert f"id='fig-{key}'" in page
    assert "sweep 1 (20 tests" in page and "layers_toy_cka.pdf" in page
    # Key tables: the peak layer of the trained model and its first significant layer.
    assert "<h2>Peak layer per model and word space</h2>" in page
    assert re.search(r"<td>toy</td><td>words</td><td>4</td><td>l2</td>", page)
    # Wide tables scroll inside their own box.
    assert page.count("<div class='table-wrap'><table>") == page.count("<table>")

    dom = dump_dom(info.html, tmp_path / "chromium-profile")
    assert f'data-figures="{len(keys)}/{len(keys)}"' in dom, dom[:500]
    inner = int(re.search(r'data-inner-width="(\d+)"', dom).group(1))
    scroll = int(re.search(r'data-scroll-width="(\d+)"', dom).group(1))
    assert inner == WINDOW
    # Nothing (table or figure) makes the page wider than the window: no sideways scroll.
    assert scroll <= inner, (scroll, inner)


def test_report_data_comes_from_the_named_queries(warehouse: Warehouse) -> None:
    data = report_data(warehouse, alpha=0.0015)
    assert {r["model"] for r in data.curves} == {"toy", "toy-random"}
    first = {r["model"]: r["first_layer"] for r in data.first_significant}
    assert first == {"toy": "l2", "toy-random": None}
    assert [r["layer"] for r in data.recovery] == ["l0", "l1", "l2", "l3"]
    # The stored intervals and the family come with the rows.
    toy = [r for r in data.curves if r["model"] == "toy"]
    assert [r["ci_low_2v2"] for r in toy] == pytest.approx([v - CI_BELOW for v in CURVES["toy"][0]])
    assert {r["n_bootstrap_2v2"] for r in toy} == {N_BOOTSTRAP}
    assert {r["ci_low_rsa"] for r in toy} == {None}
    assert data.families[1].n_tests == 20 and data.families[1].targets == ("words",)


def test_report_of_an_empty_warehouse_says_what_to_run(tmp_path: Path) -> None:
    empty = migrated_warehouse(tmp_path / "empty")
    with pytest.raises(NotFoundError, match="semwh analyze sweep"):
        build_report(empty, tmp_path / "r")
    proc = run_cli("--warehouse", str(empty.root), "report", str(tmp_path / "r"), check=False)
    assert proc.returncode == 1 and "no layer-curve results" in proc.stderr


def test_layer_curve_figures_carry_intervals_families_and_their_numbers(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    figures = write_figures(warehouse, tmp_path / "figs")
    # 2 vs 2, RSA and recovery against "words", four files each.
    assert [f.key for f in figures] == ["2v2_words", "rsa_words", "recovery_words"]
    assert {p.suffix for f in figures for p in f.paths} == {".png", ".pdf", ".svg", ".csv"}
    two = figures[0]
    rows = check_figure_files(two)
    svg = two.svg_path.read_text(encoding="utf-8")
    # Layer names on the axis, relative depth on the top axis, the family in the legend.
    for label in ("l0", "l3", "relative depth", "0.67", "sweep 1", "95% CI"):
        assert label in svg, label
    by_model = {
        m: [float(r["statistic"]) for r in rows if r["model"] == m] for m in ("toy", "toy-random")
    }
    assert by_model == {m: CURVES[m][0] for m in by_model}
    toy = [r for r in rows if r["model"] == "toy"]
    assert [r["layer"] for r in toy] == ["l0", "l1", "l2", "l3"]
    assert [float(r["ci_low"]) for r in toy] == pytest.approx(
        [v - CI_BELOW for v in CURVES["toy"][0]]
    )
    assert [float(r["ci_high"]) for r in toy] == pytest.approx(
        [v + CI_ABOVE for v in CURVES["toy"][0]]
    )
    # The random control has no stored intervals: empty cells, no made-up bars.
    assert {r["ci_low"] for r in rows if r["model"] == "toy-random"} == {""}
    assert [r["significant"] for r in toy] == ["False", "True", "True", "True"]
    assert {r["fdr_family_sweep_id"] for r in rows} == {"1"}
    # The caption: measure, test, permutations, the family and what the bars are.
    caption = two.caption
    assert "Measure: 2 vs 2 accuracy" in caption
    assert "permutation test" in caption and "100 permutations" in caption
    assert "sweep 1 (20 tests: 2v2, rsa, recovery; 2 models x 1 target)" in caption
    assert f"95% bootstrap interval ({N_BOOTSTRAP} resamples)" in caption
    assert "No error bars" in figures[1].caption
    assert "binomial test" in figures[2].caption


def test_rdm_is_ordered_by_the_chosen_attribute(warehouse: Warehouse) -> None:
    found = space_rdm(warehouse, "words", order="category")
    names = dict(zip(WNIDS, NAMES, strict=True))
    assert found.groups == sorted(found.groups)
    assert [CATEGORY[names[c]] for c in found.concepts] == found.groups
    assert found.order == "concepts ordered by 'category'"
    # The matrix is the space's, rows and columns moved together.
    words = load_space(warehouse, "words")
    vectors = words.subset(found.concepts)
    assert np.allclose(found.matrix, 1 - np.corrcoef(vectors))
    # auto: no concept has a WordNet path here, so the lab's category column decides.
    assert space_rdm(warehouse, "words").concepts == found.concepts
    with pytest.raises(ConfigError, match=r"unknown order 'colour' .*category"):
        space_rdm(warehouse, "words", order="colour")
    with pytest.raises(ConfigError, match="no concept of this space has a WordNet"):
        space_rdm(warehouse, "words", order="wordnet")
    # With WordNet hypernym paths, auto orders by them (root first).
    with warehouse.session() as s:
        for k, wnid in enumerate(WNIDS):
            path = json.dumps(["n0", f"n{k % 2}", wnid])
            s.execute(
                text("UPDATE concepts SET hypernym_path = :p, lexname = :l WHERE concept = :c"),
                {"p": path, "l": f"noun.g{k % 2}", "c": wnid},
            )
    by_wordnet = space_rdm(warehouse, "words")
    assert by_wordnet.concepts == WNIDS[0::2] + WNIDS[1::2]
    assert by_wordnet.order == "WordNet hypernym order"


def test_heatmap_titles_claim_wordnet_order_only_where_it_was_used() -> None:
    from semwh.results.report.figures import heatmap_order

    known = [{"concept": "a", "hypernym_path": '["n0", "a"]'}]
    unknown = [{"concept": "b", "hypernym_path": None}]
    assert heatmap_order(known * 2) == "concepts in WordNet hypernym order"
    assert heatmap_order(unknown * 2) == "concepts by id (no WordNet hypernyms known)"
    assert "1 of 2 with a WordNet path" in heatmap_order(known + unknown)


def test_classical_mds_recovers_a_known_configuration() -> None:
    rng = np.random.default_rng(3)
    points = rng.normal(size=(12, 2)) * [3.0, 1.0]
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    coords, kept = classical_mds(distances)
    recovered = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    assert np.allclose(recovered, distances)
    assert kept == pytest.approx(1.0)
    # Up to a rotation or reflection: the Procrustes fit of centred points is exact.
    a, b = points - points.mean(0), coords - coords.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    assert np.allclose(b @ (u @ vt), a)
    # A third dimension: two dimensions keep only part of it.
    solid = np.c_[points, rng.normal(size=12)]
    _, part = classical_mds(np.linalg.norm(solid[:, None] - solid[None], axis=2))
    assert 0.5 < part < 1.0
    with pytest.raises(DegenerateInputError, match="symmetric"):
        classical_mds(distances + np.triu(np.ones((12, 12)), 1))


@pytest.mark.parametrize("measure", ["cka", "rsa"])
def test_layer_matrix_is_the_pairwise_measure(warehouse: Warehouse, measure: str) -> None:
    found = layer_similarity(warehouse, "toy", measure)
    assert found.layers == [f"toy/l{k}" for k in range(4)]
    assert np.allclose(np.diag(found.matrix), 1.0)
    assert np.array_equal(found.matrix, found.matrix.T)
    spaces = [load_space(warehouse, name) for name in found.layers]
    for i in range(4):
        for j in range(4):
            a, b = spaces[i].matrix, spaces[j].matrix
            if measure == "cka":
                direct = linear_cka(a, b).cka
            else:
                direct = rsa(similarity_matrix(a), similarity_matrix(b)).rho
            assert found.matrix[i, j] == pytest.approx(direct, abs=1e-12)
    assert found.n_concepts == len(WNIDS)


def test_plot_writes_the_four_files_and_keeps_existing_ones(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    out = tmp_path / "figs"
    figure = plot_mds(warehouse, "words", out, order="category")
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"mds_words.{ext}" for ext in ("csv", "pdf", "png", "svg")]
    rows = check_figure_files(figure)
    assert [r["group"] for r in rows] == sorted(CATEGORY[n] for n in NAMES)
    # The plotted coordinates are the MDS of the space's RDM.
    coords, _ = classical_mds(space_rdm(warehouse, "words", order="category").matrix)
    assert np.allclose([[float(r["x"]), float(r["y"])] for r in rows], coords)
    assert "classical (Torgerson) MDS" in figure.caption
    before = (out / "mds_words.png").read_bytes()
    with pytest.raises(OutputError, match="exists: pass --force"):
        plot_mds(warehouse, "words", out, order="category")
    assert (out / "mds_words.png").read_bytes() == before
    # With force the files are replaced, byte for byte the same (no dates, fixed SVG ids):
    # a bundle's hashes of its figures hold when they are drawn again.
    files = {p: p.read_bytes() for p in figure.paths}
    again = plot_mds(warehouse, "words", out, order="category", force=True)
    assert {p: p.read_bytes() for p in again.paths} == files
    # Never inside the warehouse.
    with pytest.raises(OutputError, match="inside the warehouse"):
        plot_mds(warehouse, "words", warehouse.root / "figs")
    assert not (warehouse.root / "figs").exists()


def test_names_with_dollar_signs_are_drawn_as_text(tmp_path: Path) -> None:
    from xml.etree import ElementTree

    from semwh.results.report.figures import heatmap_figure

    names = ["cost $5 & $6", "a$x_$b", "100% _c_", "d"]
    rows = [
        {"concept": f"c{i}", "name": name, "vector": [float(i), 1.0, -(float(i) ** 2)]}
        for i, name in enumerate(names)
    ]
    figure = heatmap_figure(rows, space="s$p_$", metric="pearson", out_dir=tmp_path)
    texts = {t.text for t in ElementTree.parse(figure.svg_path).iter() if t.tag.endswith("text")}
    assert set(names) <= texts
    assert any(t and t.startswith("s$p_$: pearson similarity") for t in texts)


def test_layer_matrix_of_a_one_layer_model_is_refused(warehouse: Warehouse) -> None:
    from tests.integration.test_analyze import add_layer_space, add_model

    (layer_id,) = add_model(warehouse, "single", 1)
    vectors = np.random.default_rng(0).normal(size=(6, 3))
    add_layer_space(warehouse, "single", 0, layer_id, 1, vectors)
    with pytest.raises(DegenerateInputError, match="one layer space .* at least two"):
        layer_similarity(warehouse, "single")
