"""1 vs 2 recovery orchestration on a small synthetic warehouse built with the real writers."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select

from semwh import analyze, runs
from semwh.errors import NotFoundError
from semwh.vectors import register_vector_file, save_space, write_vector_file
from semwh.vectors.store import image_shard_relpath
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    Concept,
    Layer,
    Prediction,
    RecoveryImage,
    ResultRecovery,
    VisionModel,
)
from tests.conftest import count_rows
from tests.factories import image_row, warehouse_fixtures

pytestmark = pytest.mark.integration

MODEL = "toynet"
N_CONCEPTS = 8
PER_CONCEPT = 4
WORD_DIM = 10
LAYER_DIM = 16
NOISE = (4.0, 1.0, 0.1)
OUTSIDER = "n09999999"  # a concept with images but no word vector
WORD_ONLY = "n08888888"  # a concept with a word vector but no images


def concept_ids() -> list[str]:
    return [f"n{2000000 + 31 * i:08d}" for i in range(N_CONCEPTS)]


def build_recovery_world(
    wh: Warehouse,
    seed: int = 0,
    concepts: Sequence[str] | None = None,
    class_of: Mapping[str, str] | None = None,
    wnid_of: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The toy model's warehouse: ``concepts`` (default :func:`concept_ids`) with images,
    word vectors and three layers. ``class_of`` gives the class the model stores for a
    concept in its predictions (default: the concept's id, as for ImageNet ids) and
    ``wnid_of`` the ``concepts.wnid`` of some concepts."""
    rng = np.random.default_rng(seed)
    wnids = list(concepts) if concepts is not None else concept_ids()
    class_of = class_of or {}
    wnid_of = wnid_of or {}
    words = rng.normal(size=(N_CONCEPTS, WORD_DIM))
    word_only = rng.normal(size=(1, WORD_DIM))
    save_space(wh, "words", "word", [*wnids, WORD_ONLY], np.vstack([words, word_only]))
    image_wnids = [w for w in wnids for _ in range(PER_CONCEPT)] + [OUTSIDER] * 2
    n_images = len(image_wnids)
    with wh.session() as session:
        for w in [*wnids, OUTSIDER]:
            session.add(Concept(concept=w, name=f"concept {w}", wnid=wnid_of.get(w), origin="file"))
        session.flush()
        images = [image_row(w, i) for i, w in enumerate(image_wnids)]
        session.add_all(images)
        model = VisionModel(name=MODEL, architecture="toy", weights="none", preprocessing="{}")
        session.add(model)
        session.flush()
        image_ids = [img.image_id for img in images]
        layers = [
            Layer(
                model_id=model.model_id,
                module=f"stage{i}",
                depth_index=i,
                relative_depth=i / (len(NOISE) - 1),
                output_shape=json.dumps([LAYER_DIM]),
                pooling="avg",
                dim=LAYER_DIM,
            )
            for i in range(len(NOISE))
        ]
        session.add_all(layers)
        session.flush()
        layer_ids = [layer.layer_id for layer in layers]
        # Every third image is misclassified as the next concept; the outsider images are
        # misclassified too but have no word vector, and one image is predicted as the
        # outsider: neither kind may enter the test.
        predicted = {}
        for k, (image_id, w) in enumerate(zip(image_ids, image_wnids, strict=True)):
            if w == OUTSIDER:
                guess = wnids[0]
            elif k == 1:
                guess = OUTSIDER
            elif k == 2:
                guess = WORD_ONLY
            elif k % 3 == 0:
                guess = wnids[(wnids.index(w) + 1) % N_CONCEPTS]
            else:
                guess = w
            predicted[image_id] = guess
            session.add(
                Prediction(
                    model=MODEL,
                    image_id=image_id,
                    rank=1,
                    wnid=class_of.get(guess, guess),
                    class_index=0,
                    probability=0.5,
                )
            )
            session.add(
                Prediction(
                    model=MODEL,
                    image_id=image_id,
                    rank=2,
                    wnid=class_of.get(w, w),
                    class_index=1,
                    probability=0.2,
                )
            )
    mixing = rng.normal(size=(WORD_DIM, LAYER_DIM))
    centres = np.vstack([words @ mixing, rng.normal(size=(1, LAYER_DIM))])
    index = {w: i for i, w in enumerate([*wnids, OUTSIDER])}
    activations = {}
    for depth, (noise, layer_id) in enumerate(zip(NOISE, layer_ids, strict=True)):
        module = f"stage{depth}"
        acts = np.stack([centres[index[w]] for w in image_wnids]) + noise * rng.normal(
            size=(n_images, LAYER_DIM)
        )
        acts = acts.astype(np.float32)
        activations[module] = acts
        # Two shards per layer, as an extraction run writes them.
        half = n_images // 2
        with wh.session() as session:
            for shard, rows in enumerate((slice(0, half), slice(half, n_images))):
                info = write_vector_file(
                    wh,
                    image_shard_relpath(MODEL, module, 1, shard),
                    f"{MODEL}/{module}",
                    image_wnids[rows],
                    acts[rows],
                    image_ids=image_ids[rows],
                )
                register_vector_file(session, info, "images", layer_id=layer_id, shard_index=shard)
        concepts = [*wnids, OUTSIDER]
        means = np.stack(
            [acts[[i for i, w in enumerate(image_wnids) if w == c]].mean(axis=0) for c in concepts]
        )
        save_space(
            wh,
            f"{MODEL}/{module}",
            "layer",
            concepts,
            means,
            model=MODEL,
            layer=module,
            layer_id=layer_id,
            depth_index=depth,
            relative_depth=depth / (len(NOISE) - 1),
        )
    return {
        "wnids": wnids,
        "words": words,
        "word_wnids": [*wnids, WORD_ONLY],
        "all_words": np.vstack([words, word_only]),
        "image_ids": np.array(image_ids),
        "image_wnids": image_wnids,
        "predicted": predicted,
        "activations": activations,
    }


# One migrated warehouse with the recovery world in it, built once per module; each test a copy.
template, warehouse, rworld = warehouse_fixtures(build_recovery_world, world="rworld")


count = count_rows


def reference(rworld: dict, layer: str):
    """The pure recovery test on the fixture's own arrays, built without the warehouse."""
    ids = rworld["image_ids"]
    return analyze.recovery(
        rworld["activations"][layer],
        rworld["image_wnids"],
        [rworld["predicted"][int(i)] for i in ids],
        rworld["word_wnids"],
        # Spaces are stored as float32.
        rworld["all_words"].astype(np.float32).astype(np.float64),
        image_ids=ids,
    )


def test_recovery_rows_match_the_pure_function(warehouse: Warehouse, rworld) -> None:
    rows = runs.recovery(warehouse, MODEL, "words")
    assert [r.layer for r in rows] == ["stage0", "stage1", "stage2"]
    with warehouse.session() as session:
        for row in rows:
            want = reference(rworld, row.layer)
            out = want.outcomes
            assert (row.model, row.space_a, row.space_b) == (MODEL, f"{MODEL}/{row.layer}", "words")
            assert row.n_concepts == N_CONCEPTS == want.n_concepts
            assert row.concepts_sha256 == runs.concepts_sha256(rworld["wnids"])
            assert (row.n_images, row.n_success) == (want.n_images, want.n_success)
            assert row.accuracy == want.success_rate and row.p_value == want.p_value
            assert row.n_visual == want.n_visual
            assert row.visual_accuracy == want.visual_success_rate
            assert row.mean_rank_true == want.mean_rank
            images = {
                img.image_id: img
                for img in session.scalars(
                    select(RecoveryImage).where(RecoveryImage.result_id == row.result_id)
                )
            }
            assert sorted(images) == sorted(int(i) for i in out.image_id)
            for k, image_id in enumerate(out.image_id):
                got = images[int(image_id)]
                assert (
                    got.true_concept
                    == out.true_concept[k]
                    == rworld["image_wnids"][
                        int(np.flatnonzero(rworld["image_ids"] == image_id)[0])
                    ]
                )
                assert got.predicted_concept == out.predicted_concept[k] != got.true_concept
                assert OUTSIDER not in (got.true_concept, got.predicted_concept)
                assert got.success == bool(out.success[k])
                assert got.score_true == out.score_true[k]
                assert got.score_predicted == out.score_predicted[k]
                if got.predicted_concept == WORD_ONLY:
                    # The prediction has a word vector but no images: no visual variant.
                    assert got.visual_success is None and not out.visual_defined[k]
                else:
                    assert got.visual_success == bool(out.visual_success[k])
                assert got.rank_true == int(out.rank_true[k])
    # Tested: every third image of the known concepts (misclassified as the next concept) and
    # image 2 (predicted as a concept with a word vector but no images); image 1 is predicted
    # as the outsider and the outsider's images have no word vector.
    assert rows[0].n_images == len(range(0, N_CONCEPTS * PER_CONCEPT, 3)) + 1
    assert rows[0].n_visual == rows[0].n_images - 1
    assert all(r.n_no_prediction == 0 for r in rows)
    # The cleanest layer recovers the true class of every misclassified image.
    assert rows[-1].accuracy == 1.0 and rows[-1].mean_rank_true == 1.0


def test_recovery_reuses_and_force_adds_a_row(warehouse: Warehouse, rworld) -> None:
    first = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])
    runs_before = count(warehouse, AnalysisRun)
    again = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])
    assert [r.result_id for r in again] == [r.result_id for r in first]
    assert count(warehouse, AnalysisRun) == runs_before
    images_before = count(warehouse, RecoveryImage)
    forced = runs.recovery(warehouse, MODEL, "words", layers=["stage1"], force=True)
    assert forced[0].result_id != first[0].result_id
    assert forced[0].n_success == first[0].n_success
    # The forced row joins the first, which stays as history with its images.
    assert count(warehouse, ResultRecovery) == 2
    assert count(warehouse, RecoveryImage) == 2 * images_before
    with warehouse.session() as session:
        run = session.get(AnalysisRun, forced[0].analysis_id)
    assert run.kind == "recovery"
    hashes = json.loads(run.input_hashes)[f"{MODEL}/stage1"]
    assert set(hashes) == {f"{MODEL}/stage1", "words", "image_files", "predictions"}
    # A single call stores uncorrected p only: FDR belongs to sweeps.
    assert not hasattr(forced[0], "p_fdr")


def test_a_layer_stored_by_another_writer_meanwhile_is_kept_not_stored_twice(
    warehouse: Warehouse, rworld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sweeps with recovery at once: the second finds, when it stores, the row the first
    stored after the second had looked, and keeps it instead of adding a duplicate."""
    recovery_runs = importlib.import_module("semwh.runs.recovery")
    compute = recovery_runs.run_recovery_layer
    other: list = []

    def another_writer_first(inputs):  # the other process stores while this one computes
        if not other:
            monkeypatch.setattr(recovery_runs, "run_recovery_layer", compute)
            other.extend(runs.recovery(warehouse, MODEL, "words", layers=["stage1"]))
        return compute(inputs)

    monkeypatch.setattr(recovery_runs, "run_recovery_layer", another_writer_first)
    runs_before = count(warehouse, AnalysisRun)
    mine = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])
    assert [r.result_id for r in mine] == [r.result_id for r in other]
    assert count(warehouse, ResultRecovery) == 1
    assert count(warehouse, AnalysisRun) == runs_before + 1


def test_images_without_a_prediction_have_their_own_count(warehouse: Warehouse, rworld) -> None:
    from sqlalchemy import delete, select

    from semwh.warehouse.models import Prediction

    before = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])[0]
    with warehouse.session() as session:
        # Two images the model got right lose their predictions: not tested either way.
        ids = session.scalars(
            select(Prediction.image_id).where(Prediction.rank == 1).order_by(Prediction.image_id)
        ).all()
        gone = [i for i in ids if i % 3 == 1][:2]
        session.execute(delete(Prediction).where(Prediction.image_id.in_(gone)))
    after = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])[0]
    assert after.result_id != before.result_id  # the predictions are an input
    assert after.n_no_prediction == 2 and before.n_no_prediction == 0


def test_recovery_errors_name_what_is_missing(warehouse: Warehouse, rworld) -> None:
    with pytest.raises(NotFoundError, match="no layer\\(s\\) stage9 \\(layers: stage0, stage1"):
        runs.recovery(warehouse, MODEL, "words", layers=["stage9"])
    with pytest.raises(NotFoundError, match="unknown vision model 'other'"):
        runs.recovery(warehouse, "other", "words")


def test_sweep_runs_recovery_for_each_model_and_word_space(warehouse: Warehouse, rworld) -> None:
    result = runs.sweep(warehouse, [MODEL], ["words"], tests=["rsa"], permutations=0, recovery=True)
    assert [r.space_a for r in result.rows] == [f"{MODEL}/stage{i}" for i in range(len(NOISE))]
    assert [r.layer for r in result.recovery] == ["stage0", "stage1", "stage2"]
    # The family holds the recovery rows; BH runs over every p-value of the sweep (the RSA
    # rows have none without permutations).
    p = np.array([r.p_value for r in result.recovery])
    expected = stats.false_discovery_control(p, method="bh")
    got = [result.p_fdr[("recovery", r.result_id)] for r in result.recovery]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Asked again, recovery finds every layer stored; a forced recovery-only call adds rows
    # and leaves the sweep's family as written.
    again = runs.recovery(warehouse, MODEL, "words")
    assert [r.result_id for r in again] == [r.result_id for r in result.recovery]
    runs.recovery(warehouse, MODEL, "words", layers=["stage1"], force=True)
    with warehouse.session() as session:
        from semwh.runs.families import sweep_fdr

        assert sweep_fdr(session, result.sweep_id) == result.p_fdr
