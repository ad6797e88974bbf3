"""Per-image layer scores stored in a real warehouse: the rows equal the kernel's on the
stored vectors, a rerun replaces them, and the named queries join them with a lab's CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from semwh.analyze.exemplars import exemplar_scores
from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.results.named import run_query
from semwh.runs.exemplars import score_images
from semwh.vectors import get_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import AnalysisRun, ImageScore
from tests.conftest import run_cli
from tests.factories import add_image_layer, add_stimuli, warehouse_fixtures

pytestmark = pytest.mark.integration

# Six concepts of three images and one of a single image (skipped, but still a centroid).
CONCEPTS = [f"c{k}" for k in range(6) for _ in range(3)] + ["solo"]


def build_world(wh: Warehouse) -> dict:
    """Model ``m`` with two layers of the images of CONCEPTS (l2 less noisy than l1), and
    model ``lone`` whose four images each have a concept of their own."""
    rng = np.random.default_rng(0)
    images = add_stimuli(wh, CONCEPTS)
    base = rng.normal(size=(7, 10))
    rows = np.array([int(c[1]) if c != "solo" else 6 for c in CONCEPTS])
    layers = {
        "l1": base[rows] + 2.0 * rng.normal(size=(len(CONCEPTS), 10)),
        "l2": base[rows] + 0.5 * rng.normal(size=(len(CONCEPTS), 10)),
    }
    for depth, (layer, x) in enumerate(layers.items()):
        add_image_layer(wh, "m", layer, images, CONCEPTS, x, depth)
    lonely = ["a", "b", "c", "d"]
    alone = add_stimuli(wh, lonely, prefix="lone_")
    add_image_layer(wh, "lone", "l1", alone, lonely, rng.normal(size=(4, 5)))
    return {"images": images, "layers": layers}


template, warehouse, world = warehouse_fixtures(build_world)


def _stored(wh: Warehouse, space: str, similarity: str = "pearson") -> list[ImageScore]:
    with wh.session() as session:
        return list(
            session.scalars(
                select(ImageScore)
                .where(ImageScore.space == space, ImageScore.similarity == similarity)
                .order_by(ImageScore.stimulus)
            )
        )


def test_stored_scores_equal_the_kernel_and_a_rerun_replaces_them(
    warehouse: Warehouse, world: dict
) -> None:
    wh, images, layers = warehouse, world["images"], world["layers"]
    runs = score_images(wh, model="m")
    assert [r.space for r in runs] == ["m/l1", "m/l2"]
    for run, (layer, x) in zip(runs, layers.items(), strict=True):
        # The layer stores float32 vectors; the kernel sees them as they were stored.
        ref = exemplar_scores(np.float32(x).astype(np.float64), CONCEPTS, similarity="pearson")
        assert (run.n_images, run.n_scored, run.n_skipped) == (19, 18, 1)
        assert run.n_correct == int(ref.correct.sum()) and run.n_concepts == 7
        rows = {r.stimulus: r for r in _stored(wh, f"m/{layer}")}
        assert len(rows) == 18 and "solo_1" not in rows
        for k, i in enumerate(ref.index.tolist()):
            row = rows[images[i][1]]
            assert row.image_id == images[i][0] and row.concept == CONCEPTS[i]
            assert row.nearest_concept == ref.concepts[ref.nearest[k]]
            assert (row.correct, row.rank, row.n_images) == (
                bool(ref.correct[k]), int(ref.rank[k]), 3
            )  # fmt: skip
            assert row.margin == pytest.approx(ref.margin[k], abs=1e-9)
            assert row.own_similarity == pytest.approx(ref.own_similarity[k], abs=1e-9)
            assert row.n_concepts == 7 and row.analysis_id == run.analysis_id
        with wh.session() as session:
            assert {r.space_sha256 for r in rows.values()} == {
                get_space(session, f"m/{layer}").content_sha256
            }
            stored_run = session.get(AnalysisRun, run.analysis_id)
            assert stored_run is not None and stored_run.kind == "image_scores"
            assert '"similarity":"pearson"' in stored_run.params.replace(" ", "")
    # The less noisy layer separates the concepts better.
    assert runs[1].accuracy > runs[0].accuracy

    again = score_images(wh, "m/l1")
    cosine = score_images(wh, ["m/l1"], similarity="cosine")
    with wh.session() as session:
        count = session.scalar(
            select(func.count()).select_from(ImageScore).where(ImageScore.space == "m/l1")
        )
    assert count == 36  # 18 pearson rows (replaced, not added) and 18 cosine rows
    assert {r.analysis_id for r in _stored(wh, "m/l1")} == {again[0].analysis_id}
    assert {r.analysis_id for r in _stored(wh, "m/l1", "cosine")} == {cosine[0].analysis_id}


def test_named_queries_join_a_reaction_time_csv(warehouse: Warehouse, tmp_path: Path) -> None:
    wh = warehouse
    score_images(wh, model="m")
    lab = tmp_path / "lab"
    lab.mkdir()
    rts = lab / "rts.csv"
    # c0_1 and c2_3 are scored; solo_1 is the only image of its concept; x_9 is unknown.
    rts.write_text("stimulus,rt_ms\nc0_1,512.5\nc2_3,640\nsolo_1,700\nx_9,800\n")
    joined = run_query(
        wh, "image_scores_join_csv", {"path": str(rts), "space": "m/l2"}, allow_read=[lab]
    ).table.to_pylist()
    assert [(r["stimulus"], r["rt_ms"]) for r in joined] == [("c0_1", 512.5), ("c2_3", 640.0)]
    listed = {
        r["stimulus"]: r for r in run_query(wh, "image_scores", {"space": "m/l2"}).table.to_pylist()
    }
    assert len(listed) == 18
    for r in joined:
        same = listed[r["stimulus"]]
        assert (r["model"], r["layer"], r["depth_index"]) == ("m", "l2", 1)
        assert r["is_current"] and same["is_current"]
        for column in ("correct", "margin", "rank", "nearest_concept", "image_id"):
            assert r[column] == same[column]
    every = run_query(wh, "image_scores_join_csv", {"path": str(rts)}, allow_read=[lab])
    assert sorted({r["space"] for r in every.table.to_pylist()}) == ["m/l1", "m/l2"]
    cosine = {"path": str(rts), "similarity": "cosine"}  # none stored with cosine
    assert run_query(wh, "image_scores_join_csv", cosine, allow_read=[lab]).table.num_rows == 0


def _image_level_space(
    wh: Warehouse, name: str, kind: str, images: list[tuple[int, str]], x: np.ndarray
) -> None:
    """A space of ``kind`` that holds per-image rows (as an image-level ingest stores one)."""
    from semwh.vectors import register_vector_file, save_space, write_vector_file

    keys = sorted(set(CONCEPTS))
    means = np.stack([x[[c == k for c in CONCEPTS]].mean(axis=0) for k in keys])
    space = save_space(wh, name, kind, keys, means)
    info = write_vector_file(
        wh, f"kind=images/space={name}/rows.parquet", name, CONCEPTS, x,
        image_ids=[i for i, _ in images],
    )  # fmt: skip
    with wh.session() as session:
        register_vector_file(session, info, "images", space_id=space.space_id)


def test_a_space_ingested_per_image_is_scored_and_an_rdm_is_refused(
    warehouse: Warehouse, world: dict
) -> None:
    from semwh.vectors import save_space

    wh, images, layers = warehouse, world["images"], world["layers"]
    _image_level_space(wh, "ratings", "external", images, layers["l2"])
    (run,) = score_images(wh, "ratings")
    assert run.n_scored == 18
    score_images(wh, "m/l2")
    same_vectors = {r.stimulus: (r.rank, r.nearest_concept) for r in _stored(wh, "m/l2")}
    assert {r.stimulus: (r.rank, r.nearest_concept) for r in _stored(wh, "ratings")} == (
        same_vectors
    )
    _image_level_space(wh, "dissimilarities", "rdm", images, layers["l1"])
    with pytest.raises(ConfigError, match="holds dissimilarities between stimuli"):
        score_images(wh, "dissimilarities")
    save_space(wh, "means", "external", ["c0", "c1", "c2", "c3"], layers["l1"][:4])
    with pytest.raises(ConfigError, match="has no image level"):
        score_images(wh, "means")
    assert _stored(wh, "dissimilarities") == [] and _stored(wh, "means") == []


def test_refusals_store_nothing(warehouse: Warehouse) -> None:
    wh = warehouse
    with pytest.raises(DegenerateInputError, match="each of its 4 images is the only image"):
        score_images(wh, "lone/l1")
    with pytest.raises(ConfigError, match="choose pearson, cosine"):
        score_images(wh, "m/l1", similarity="spearman")
    with pytest.raises(ConfigError, match="name the spaces to score"):
        score_images(wh)
    with pytest.raises(NotFoundError, match="unknown space 'm/l9'"):
        score_images(wh, ["m/l1", "m/l9"])  # refused before m/l1 is scored
    with wh.session() as session:
        assert session.scalar(select(func.count()).select_from(ImageScore)) == 0


def test_cli_prints_the_summary(warehouse: Warehouse) -> None:
    proc = run_cli(
        "--warehouse", str(warehouse.root), "analyze", "image-scores", "--model", "m",
        "--similarity", "cosine",
    )  # fmt: skip
    assert "m/l1" in proc.stdout and "m/l2" in proc.stdout and "cosine" in proc.stdout
    assert "the only image of their concept" in proc.stderr
    bad = run_cli("--warehouse", str(warehouse.root), "analyze", "image-scores", check=False)
    assert bad.returncode == 1 and "name the spaces to score" in bad.stderr


def test_the_join_matches_stimulus_ids_in_either_unicode_form(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Stimulus ids registered from file stems in decomposed Unicode (as macOS writes them)
    join with a lab CSV written in composed form."""
    import unicodedata

    concepts = ["p", "p", "q", "q", "r", "r"]
    images = add_stimuli(warehouse, concepts, prefix=unicodedata.normalize("NFD", "é_"))
    x = np.random.default_rng(5).normal(size=(6, 4))
    add_image_layer(warehouse, "nfd", "l1", images, concepts, x)
    score_images(warehouse, ["nfd/l1"])
    lab = tmp_path / "lab"
    lab.mkdir()
    rows = [f"{unicodedata.normalize('NFC', s)},{k}" for k, (_, s) in enumerate(images)]
    (lab / "rts.csv").write_text("stimulus,rt_ms\n" + "\n".join(rows) + "\n", encoding="utf-8")
    joined = run_query(
        warehouse, "image_scores_join_csv", {"path": str(lab / "rts.csv"), "space": "nfd/l1"},
        allow_read=[lab],
    ).table  # fmt: skip
    assert joined.num_rows == 6
