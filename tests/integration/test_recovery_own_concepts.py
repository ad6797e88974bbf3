"""1 vs 2 recovery on a lab's own concepts (THINGS-style ids) that are not the model's classes:
skipped with a stored, printed reason, never stored as rows of zeros."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from semwh import runs
from semwh.results.named import run_query
from semwh.runs.recovery import (
    ClassCover,
    _add_rows,
    not_covered_reason,
    recovery_inputs,
    recovery_layers,
    run_recovery_layer,
    top1_predictions,
)
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    Image,
    Prediction,
    RecoveryImage,
    ResultRecovery,
)
from tests.conftest import count_rows, run_cli
from tests.factories import add_analysis_run, warehouse_fixtures
from tests.integration.test_analyze_recovery import (
    MODEL,
    OUTSIDER,
    WORD_ONLY,
    build_recovery_world,
)

pytestmark = pytest.mark.integration

THINGS = [
    "aardvark",
    "bean_bag",
    "ice_cream",
    "bike_helmet",
    "anvil",
    "kazoo",
    "okra",
    "yurt",
]
#: ImageNet-1k classes the model stores for its images: none of them is a concept of the
#: warehouse but ice cream's (``ice_cream`` has its wnid).
CLASSES = [
    "n01440764",
    "n01443537",
    "n01484850",
    "n01491361",
    "n01494475",
    "n01496331",
    "n01498041",
    "n01514668",
    "n01514859",
    "n01518878",
]
ICE_CREAM = "n07614500"


def build_things_world(wh: Warehouse) -> dict[str, object]:
    class_of = dict(zip([*THINGS, OUTSIDER, WORD_ONLY], CLASSES, strict=True))
    class_of["ice_cream"] = ICE_CREAM
    return build_recovery_world(
        wh, concepts=THINGS, class_of=class_of, wnid_of={"ice_cream": ICE_CREAM}
    )


template, warehouse, tworld = warehouse_fixtures(build_things_world, world="tworld")


def test_recovery_skips_a_model_whose_classes_are_not_the_concepts(warehouse: Warehouse) -> None:
    report = runs.recovery(warehouse, MODEL, "words")
    assert list(report) == [] and len(report) == 0
    (skip,) = report.skipped
    assert (skip.model, skip.word_space) == (MODEL, "words")
    assert skip.layers == ["stage0", "stage1", "stage2"]
    assert skip.reason.startswith(
        f"1 of the 8 concepts of the images of {MODEL} (with vectors in 'words') are classes "
        f"of {MODEL} (ImageNet-1k, by wnid) (ice_cream); 1 vs 2 recovery needs the model's "
        "predictions to be concepts"
    )
    # Images predicted as ice cream have a concept and a prediction with word vectors: the
    # test would have run on them, yet one class among eight concepts tests nothing.
    assert count_rows(warehouse, ResultRecovery) == 0
    assert count_rows(warehouse, RecoveryImage) == 0
    with warehouse.session() as session:
        run = session.get(AnalysisRun, skip.analysis_id)
    assert run.kind == "recovery"
    params = json.loads(run.params)
    assert params["skipped"] == skip.reason
    assert (params["n_concepts"], params["n_class_concepts"]) == (8, 1)
    # Asked again, the same skip is found, not recorded twice.
    again = runs.recovery(warehouse, MODEL, "words", layers=["stage1"])
    assert again.skipped[0].analysis_id != skip.analysis_id  # other layers: another record
    third = runs.recovery(warehouse, MODEL, "words")
    assert third.skipped[0].analysis_id == skip.analysis_id
    assert count_rows(warehouse, AnalysisRun) == 2
    rows = run_query(warehouse, "recovery_skipped", {"model": MODEL}).table.to_pylist()
    assert [r["analysis_id"] for r in rows] == [again.skipped[0].analysis_id, skip.analysis_id]
    assert rows[1]["reason"] == skip.reason and rows[1]["n_class_concepts"] == 1


def test_sweep_records_the_skip_and_carries_on(warehouse: Warehouse) -> None:
    result = runs.sweep(warehouse, [MODEL], ["words"], tests=["rsa"], permutations=0, recovery=True)
    assert len(result.rows) == 3 and result.recovery == []
    (skip,) = result.skipped
    assert (skip.test, skip.space_a, skip.space_b) == ("recovery", MODEL, "words")
    assert "are classes of toynet" in skip.reason
    with warehouse.session() as session:
        run = session.get(AnalysisRun, result.analysis_id)
    assert json.loads(run.params)["skipped"] == [skip.to_dict()]
    assert count_rows(warehouse, ResultRecovery) == 0


def test_cli_prints_one_line_and_exits_3(warehouse: Warehouse) -> None:
    proc = run_cli(
        "--warehouse",
        str(warehouse.root),
        "analyze",
        "recovery",
        "--model",
        MODEL,
        "--words",
        "words",
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(
        f"skipped: 1 of the 8 concepts of the images of {MODEL} (with vectors in 'words') are "
        f"classes of {MODEL} (ImageNet-1k, by wnid) (ice_cream); 1 vs 2 recovery needs"
    )
    assert lines[0].endswith("(layers stage0, stage1, stage2; recorded as analysis run 1)")
    assert "results_recovery" not in proc.stdout
    assert count_rows(warehouse, ResultRecovery) == 0


def test_a_model_with_nothing_misclassified_is_skipped_too(warehouse: Warehouse) -> None:
    # Each image's top-1 class is now its own concept (the concepts are the model's classes)
    # and the model gets every image right: nothing to test, so no row of zeros either.
    own = select(Image.concept).where(Image.image_id == Prediction.image_id).scalar_subquery()
    with warehouse.session() as session:
        session.execute(update(Prediction).where(Prediction.rank == 1).values(wnid=own))
    # A row of zeros stored by an earlier version answers nothing: it stays as history.
    layer = recovery_layers(warehouse, MODEL, ["stage0"])[0]
    predictions = top1_predictions(warehouse, MODEL)
    inputs = recovery_inputs(warehouse, layer, load_space(warehouse, "words"), predictions)
    with warehouse.session() as session:
        old = add_analysis_run(session, kind="recovery").analysis_id
        _add_rows(session, old, run_recovery_layer(inputs))
    report = runs.recovery(warehouse, MODEL, "words")
    assert report.rows == []
    (skip,) = report.skipped
    assert skip.layers == ["stage0", "stage1", "stage2"]
    assert skip.reason.startswith(
        f"no image of {MODEL} to test against 'words': of its images, 0 are misclassified"
    )
    with warehouse.session() as session:
        assert session.scalars(select(ResultRecovery.analysis_id)).all() == [old]


def test_the_reason_counts_the_concepts_and_names_the_head() -> None:
    cover = ClassCover("resnet50", "ImageNet-1k, by wnid", ["a", "b", "c", "d"], [])
    assert not_covered_reason(cover, "glove") == (
        "0 of the 4 concepts of the images of resnet50 (with vectors in 'glove') are classes "
        "of resnet50 (ImageNet-1k, by wnid); 1 vs 2 recovery needs the model's predictions to "
        "be concepts, of at least 4 of them"
    )
    # Four classes suffice; fewer than four concepts is the layer's own error, not a skip.
    assert not_covered_reason(ClassCover("m", "h", list("abcd"), list("abcd")), "w") is None
    assert not_covered_reason(ClassCover("m", "h", list("abc"), []), "w") is None


def test_images_of_concepts_that_are_not_classes_are_not_tested(warehouse: Warehouse) -> None:
    # The model's classes now cover five of the eight concepts (four by their own ids, ice
    # cream by its wnid): the test runs, on the images of those five only.
    class_of = dict(zip(THINGS, CLASSES, strict=False))
    covered = ["aardvark", "bean_bag", "bike_helmet", "anvil"]
    with warehouse.session() as session:
        for concept in covered:
            session.execute(
                update(Prediction).where(Prediction.wnid == class_of[concept]).values(wnid=concept)
            )
    report = runs.recovery(warehouse, MODEL, "words", layers=["stage2"])
    assert report.skipped == []
    (row,) = report.rows
    with warehouse.session() as session:
        tested = session.execute(
            select(RecoveryImage.true_concept, RecoveryImage.predicted_concept).where(
                RecoveryImage.result_id == row.result_id
            )
        ).all()
    classes = {*covered, "ice_cream"}
    assert row.n_images == len(tested) == 6
    assert all(t in classes and p in classes for t, p in tested)
    # A yurt image predicted as an aardvark has both word vectors, but the model cannot
    # predict a yurt: it is no misclassification.
    layer = recovery_layers(warehouse, MODEL, ["stage2"])[0]
    inputs = recovery_inputs(
        warehouse, layer, load_space(warehouse, "words"), top1_predictions(warehouse, MODEL)
    )
    assert inputs.classes == sorted(classes)
    fresh = run_recovery_layer(inputs).result
    assert fresh.n_images == 6 and fresh.n_skipped_not_a_class > 0
    assert ("yurt", "aardvark") in {
        (inputs.image_concepts[i], inputs.predicted[i]) for i in range(len(inputs.predicted))
    }
