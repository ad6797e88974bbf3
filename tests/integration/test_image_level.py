"""Analyses at the image level through every path: single analyses, sweeps, grids, peaks,
verify, the views and queries, the report and the command line, on a real DuckDB warehouse
whose layers hold per-image vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from semwh.errors import ConfigError
from semwh.results.named import run_query
from semwh.runs.comparison import compare
from semwh.runs.grid import grid, peak_layer
from semwh.runs.levels import Items
from semwh.runs.measures import compare_measure
from semwh.runs.sweep import sweep
from semwh.runs.verify import verify
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import PermutationNull, Result
from tests.conftest import run_cli
from tests.factories import add_image_layer, add_stimuli, warehouse_fixtures

#: 10 concepts of 3 images and 2 concepts of 2 (unequal sizes: the 2-image concepts exchange
#: only with each other under concept-block permutations).
CONCEPTS = [f"c{i:02d}" for i in range(10) for _ in range(3)] + ["d1", "d1", "d2", "d2"]


def build(wh: Warehouse) -> dict[str, str]:
    rng = np.random.default_rng(0)
    images = add_stimuli(wh, CONCEPTS)
    codes = {c: i for i, c in enumerate(dict.fromkeys(CONCEPTS))}
    structure = rng.normal(size=(len(codes), 12))[[codes[c] for c in CONCEPTS]]
    names = {}
    for depth, noise in enumerate((1.0, 0.6, 2.0)):
        x = structure @ rng.normal(size=(12, 10)) + noise * rng.normal(size=(len(CONCEPTS), 10))
        names[f"l{depth}"] = add_image_layer(wh, "m", f"l{depth}", images, CONCEPTS, x, depth)
    target = structure + rng.normal(size=structure.shape)
    names["t"] = add_image_layer(wh, "t", "t0", images, CONCEPTS, target, 0)
    return names


template, warehouse, spaces = warehouse_fixtures(build, "spaces")


def test_layers_load_at_both_levels(warehouse: Warehouse, spaces: dict[str, str]) -> None:
    image = load_space(warehouse, spaces["l0"], "image")
    concept = load_space(warehouse, spaces["l0"])
    assert image.level == "image" and image.concept_ids == sorted(image.concept_ids)
    assert len(image.concept_ids) == len(CONCEPTS) and len(concept.concept_ids) == 12
    assert image.item_concepts is not None
    # The concept level is the mean of each concept's images (stored in float32).
    for k, concept_id in enumerate(concept.concept_ids):
        rows = [i for i, c in enumerate(image.item_concepts) if c == concept_id]
        np.testing.assert_allclose(concept.matrix[k], image.matrix[rows].mean(axis=0), atol=1e-5)


def test_an_unfinished_extraction_run_is_not_read(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    """A second extraction of a layer that is still running (or stopped) has written some of
    its shards: the image level reads the run the concept means were computed from, as the
    concept level does (the finished run, or the one a concept file records)."""
    from semwh.vectors.store import (
        image_shard_relpath,
        register_vector_file,
        save_space,
        write_vector_file,
    )
    from semwh.warehouse.models import ExtractionRun, Image, Space

    before = load_space(warehouse, spaces["l0"], "image")
    with warehouse.session() as session:
        layer_id = session.scalar(select(Space.layer_id).where(Space.name == spaces["l0"]))
        model_id = session.scalar(select(ExtractionRun.model_id))
        run = ExtractionRun(
            model_id=model_id, params_sha256="again", params="{}", n_images=34, n_shards=2,
            status="running",
        )  # fmt: skip
        session.add(run)
        session.flush()
        run_id = run.run_id
        images = session.execute(select(Image.image_id, Image.concept).limit(10)).all()
    info = write_vector_file(
        warehouse, image_shard_relpath("m", "l0", run_id, 0), spaces["l0"],
        [c for _, c in images], np.full((10, 10), 99.0), image_ids=[i for i, _ in images],
    )  # fmt: skip
    with warehouse.session() as session:
        register_vector_file(
            session, info, "images", layer_id=layer_id, run_id=run_id, shard_index=0
        )
    after = load_space(warehouse, spaces["l0"], "image")
    assert after.concept_ids == before.concept_ids
    np.testing.assert_array_equal(after.matrix, before.matrix)
    # The new run's concept means are stored (an extraction stopped before it marked the
    # run done): the image level follows them, the new run's images only.
    keys = sorted({c for _, c in images})
    save_space(
        warehouse, spaces["l0"], "layer", keys, np.full((len(keys), 10), 99.0), model="m",
        layer="l0", layer_id=layer_id, replace=True, metadata={"run_id": run_id},
    )  # fmt: skip
    newer = load_space(warehouse, spaces["l0"], "image")
    assert len(newer.concept_ids) == 10 and np.all(newer.matrix == 99.0)


def test_images_removed_since_the_extraction_say_to_extract_again(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    """An image that `ingest images` removed since the layer was extracted: the image level
    is out of date, and the message says to extract again (a repair changes nothing)."""
    from sqlalchemy import delete

    from semwh.errors import VectorFileError
    from semwh.warehouse.models import Image

    with warehouse.session() as session:
        session.execute(delete(Image).where(Image.stimulus == "c01_2"))
    with pytest.raises(VectorFileError, match=r"no longer holds .* extract m again"):
        load_space(warehouse, spaces["l0"], "image")


def test_results_record_level_items_and_scheme_and_reuse_by_them(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    a, t = spaces["l0"], spaces["t"]
    image = compare(warehouse, a, t, "rsa", permutations=50, seed=4, items=Items("image"))
    assert (image.level, image.n_items, image.n_concepts) == ("image", 34, 12)
    assert (image.permute, image.resample) == ("concepts", "concepts")
    concept = compare(warehouse, a, t, "rsa", permutations=50, seed=4)
    assert (concept.level, concept.n_items, concept.permute) == ("concept", 12, "concepts")
    assert concept.result_id != image.result_id
    free = compare(warehouse, a, t, "rsa", permutations=50, seed=4, items=Items("image", "images"))
    assert free.result_id != image.result_id and free.statistic == image.statistic
    again = compare(warehouse, a, t, "rsa", permutations=50, seed=4, items=Items("image"))
    assert again.result_id == image.result_id, "the same level and scheme is reused"
    with warehouse.session() as session:
        rows = session.scalars(select(Result).order_by(Result.result_id)).all()
        assert [r.level for r in rows] == ["image", "concept", "image"]


def test_every_path_gives_the_single_analysis_numbers(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    """A sweep's cell, a grid's cell and verify give what the single analysis gives for the
    same spaces, scheme and seed."""
    items = Items("image", "within-concept")
    swept = sweep(
        warehouse, ["m"], [spaces["t"]], tests=["rsa", "2v2"], permutations=30, seed=5,
        include_random=False, item_level="image", permute="within-concept",
    )  # fmt: skip
    assert {r.level for r in swept.rows} == {"image"} and len(swept.rows) == 6
    for row in swept.rows:
        single = compare(
            warehouse, row.space_a, row.space_b, row.measure, permutations=30, seed=row.seed,
            items=items, force=True,
        )  # fmt: skip
        assert (single.statistic, single.p_value) == (row.statistic, row.p_value)
    cells = grid(
        warehouse, "m", [spaces["t"]], tests=["cka"], permutations=20, seed=6,
        item_level="image",
    )  # fmt: skip
    for cell in cells.cells[cells.grids[0].grid_id]:
        single = compare_measure(
            warehouse, cell.space_a, cell.space_b, "cka", permutations=20, seed=6,
            items=Items("image"), force=True,
        )  # fmt: skip
        assert (single.statistic, single.p_value) == (cell.statistic, cell.p_value)
    peak = peak_layer(
        warehouse, "m", spaces["t"], tests=["rsa"], permutations=20, bootstrap=20, seed=7,
        item_level="image",
    )  # fmt: skip
    assert peak.grids[0].depth_ci_low is not None
    report = verify(warehouse, every=True)
    assert {v.status for v in report.verdicts} == {"reproduced"}


def test_grid_and_peak_queries_keep_the_levels_apart(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    """The newest grid and peak of each level: an image-level peak does not hide the
    concept-level one of the same model and target, and each row says its level."""
    for level in ("concept", "image"):
        peak_layer(
            warehouse, "m", spaces["t"], tests=["rsa"], permutations=19, bootstrap=20, seed=7,
            item_level=level,
        )  # fmt: skip
        grid(
            warehouse, "m", [spaces["t"]], tests=["rsa"], permutations=19, seed=7, item_level=level
        )
    peaks = run_query(warehouse, "peak_inference", {"model": "m"}).table.to_pylist()
    assert sorted(r["item_level"] for r in peaks) == ["concept", "image"]
    assert {r["n_concepts"] for r in peaks} == {12}
    image = run_query(warehouse, "peak_inference", {"level": "image"}).table.to_pylist()
    assert [r["grid_id"] for r in image] == [
        r["grid_id"] for r in peaks if r["item_level"] == "image"
    ]
    cells = run_query(warehouse, "grid_cells", {}).table.to_pylist()
    assert {r["item_level"] for r in cells} == {"concept", "image"} and len(cells) == 6
    image_cells = run_query(warehouse, "grid_cells", {"level": "image"}).table.to_pylist()
    assert len(image_cells) == 3 and {r["item_level"] for r in image_cells} == {"image"}


def test_concept_block_null_keeps_unequal_concepts_apart(
    warehouse: Warehouse, spaces: dict[str, str]
) -> None:
    """Under concept-block permutations the images of d1 and d2 (two images each) only
    exchange with each other: the stored null equals the one from permuting by hand."""
    from semwh.analyze.rsa import rsa as rsa_statistic
    from semwh.analyze.similarity import similarity_matrix

    row = compare(
        warehouse, spaces["l1"], spaces["t"], "rsa", permutations=25, seed=8,
        items=Items("image"),
    )  # fmt: skip
    a = load_space(warehouse, spaces["l1"], "image")
    b = load_space(warehouse, spaces["t"], "image")
    assert a.item_concepts is not None
    members: dict[str, list[int]] = {}
    for i, c in enumerate(a.item_concepts):
        members.setdefault(c, []).append(i)
    sizes = sorted({len(m) for m in members.values()})
    rng = np.random.default_rng(8)
    sim_a = similarity_matrix(a.matrix)
    expected = []
    for _ in range(25):
        perm = np.arange(len(a.concept_ids))
        for size in sizes:
            group = [c for c in members if len(members[c]) == size]
            order = rng.permutation(len(group))
            for target, source in zip(group, order, strict=True):
                perm[members[target]] = members[group[source]]
        expected.append(rsa_statistic(sim_a, similarity_matrix(b.matrix[perm])).rho)
    with warehouse.session() as session:
        stored = session.get(PermutationNull, ("rsa", row.result_id))
        assert stored is not None
        null = np.array(json.loads(stored.values))
    np.testing.assert_allclose(null, expected, atol=1e-12)


def test_curves_keep_the_levels_apart(warehouse: Warehouse, spaces: dict[str, str]) -> None:
    common = dict(tests=["rsa"], permutations=10, seed=9, include_random=False)
    sweep(warehouse, ["m"], [spaces["t"]], **common)
    sweep(warehouse, ["m"], [spaces["t"]], item_level="image", **common)
    concept = run_query(warehouse, "layer_curves").table.to_pylist()
    image = run_query(warehouse, "layer_curves", {"level": "image"}).table.to_pylist()
    assert {(r["level"], r["n_items"]) for r in concept} == {("concept", 12)}
    assert {(r["level"], r["n_items"]) for r in image} == {("image", 34)}
    assert len(concept) == len(image) == 3
    measures = run_query(warehouse, "measure_curves", {"measure": "rsa", "level": "image"})
    assert measures.table.column("level").to_pylist() == ["image"] * 3


def test_refusals(warehouse: Warehouse, spaces: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="applies at the image level"):
        Items("concept", "within-concept")
    with pytest.raises(ConfigError, match="unknown permutation scheme"):
        Items("image", "stimuli")
    with pytest.raises(ConfigError, match="--diff-random"):
        sweep(warehouse, ["m"], [spaces["t"]], item_level="image", control_diffs=True)


def test_cli_image_level_and_report(warehouse: Warehouse, spaces: dict[str, str]) -> None:
    root = str(warehouse.root)
    proc = run_cli(
        "--warehouse", root, "analyze", "2v2", "--a", spaces["l0"], "--b", spaces["t"],
        "--level", "image", "--permute", "images", "-n", "20", "--seed", "3",
    )  # fmt: skip
    assert "34 stimuli of 12 concepts, permuting images" in proc.stderr
    assert "permute" in proc.stdout and "images" in proc.stdout
    proc = run_cli(
        "--warehouse", root, "analyze", "sweep", "--models", "m", "--words", spaces["t"],
        "--tests", "rsa", "-n", "10", "--seed", "2", "--level", "image",
        "--permute", "within-concept",
    )  # fmt: skip
    out = Path(root).parent / "report-out"
    run_cli("--warehouse", root, "report", str(out))
    page = (out / "report.html").read_text()
    assert (
        "Layer curves at the image level" in page
        and "RSA against the layers of t, image level" in page
    )
    # The image-level curves name the scheme of their nulls.
    assert page.count("<td>within-concept</td>") == 3
    proc = run_cli(
        "--warehouse", root, "analyze", "rsa", "--a", spaces["l0"], "--b", spaces["t"],
        "--permute", "within-concept", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "add --level image" in proc.stderr


def test_the_readme_worked_example(
    warehouse: Warehouse, spaces: dict[str, str], tmp_path: Path
) -> None:
    """README's image-level example, command by command: per-image ROI responses ingested
    at the image level, a layer against them with concept-block permutations, per-image
    scores joined with a ratings CSV in SQL."""
    root = str(warehouse.root)
    image = load_space(warehouse, spaces["t"], "image")
    rng = np.random.default_rng(11)
    roi = image.matrix[:, :6] + rng.normal(size=(len(image.concept_ids), 6))
    lines = ["stimulus," + ",".join(f"v{k}" for k in range(6))]
    lines += [
        f"{s}," + ",".join(f"{v:.6f}" for v in row)
        for s, row in zip(image.concept_ids, roi, strict=True)
    ]
    (tmp_path / "roi_lo.csv").write_text("\n".join(lines) + "\n")
    ratings = [f"{s},{k % 7}" for k, s in enumerate(image.concept_ids)]
    (tmp_path / "ratings.csv").write_text("stimulus,rating\n" + "\n".join(ratings) + "\n")
    cli = ("--warehouse", root)
    run_cli(*cli, "ingest", "space", "roi_lo", str(tmp_path / "roi_lo.csv"), "--level", "image")
    proc = run_cli(
        *cli, "analyze", "rsa", "--a", spaces["l0"], "--b", "roi_lo", "--level", "image",
        "-n", "50", "--seed", "1",
    )  # fmt: skip
    assert "34 stimuli of 12 concepts, permuting concepts" in proc.stderr
    run_cli(*cli, "analyze", "image-scores", "--model", "m")
    proc = run_cli(
        *cli, "sql", "--allow-read", str(tmp_path), "--format", "csv",
        "SELECT s.space, count(*) AS n, corr(s.margin, r.rating) AS r_margin_rating "
        f"FROM image_scores AS s JOIN read_csv_auto('{tmp_path / 'ratings.csv'}') AS r "
        "USING (stimulus) GROUP BY s.space ORDER BY s.space",
    )  # fmt: skip
    rows = proc.stdout.strip().splitlines()
    assert rows[0].startswith("space,n,r_margin_rating") and len(rows) == 4
    assert all(row.split(",")[1] == "34" for row in rows[1:])
