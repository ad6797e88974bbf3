"""The registry's uniqueness rules reject duplicates with a DuplicateError that names the key."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from semwh.errors import DuplicateError
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    Concept,
    Image,
    Layer,
    Result2v2,
    ResultRSA,
    Space,
    SweepMember,
    VisionModel,
)
from tests.factories import add_analysis_run, add_sweep, comparison, image_row


def _concept(concept: str = "n02084071", index: int | None = None) -> Concept:
    return Concept(concept=concept, name="dog", origin="file", imagenet_index=index)


def _image(sha: str, stimulus: str, concept: str = "n02084071") -> Image:
    return image_row(
        concept, 0, stimulus=stimulus, path=f"{sha}.jpg", sha256=sha, width=4, height=4
    )


def _model(wh: Warehouse, name: str = "resnet50") -> int:
    with wh.session() as session:
        model = VisionModel(name=name, architecture=name, weights="none", preprocessing="{}")
        session.add(model)
        session.flush()
        return model.model_id


def _analysis(wh: Warehouse) -> int:
    with wh.session() as session:
        return add_analysis_run(session).analysis_id


def test_concept_wnid_is_unique(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(_concept())
    with pytest.raises(DuplicateError, match="n02084071"):
        with warehouse.session() as session:
            session.add(_concept())


def test_concept_imagenet_index_is_unique(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(_concept("n1", index=3))
    with pytest.raises(DuplicateError, match="imagenet_index"):
        with warehouse.session() as session:
            session.add(_concept("n2", index=3))


def test_image_sha256_is_unique(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(_concept())
        session.flush()
        session.add(_image("ab" * 32, "dog_01"))
    with pytest.raises(DuplicateError, match="sha256"):
        with warehouse.session() as session:
            session.add(_image("ab" * 32, "dog_02"))


def test_image_stimulus_is_unique(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(_concept())
        session.flush()
        session.add(_image("ab" * 32, "dog_01"))
    with pytest.raises(DuplicateError, match='images: Duplicate key "stimulus: dog_01"'):
        with warehouse.session() as session:
            session.add(_image("cd" * 32, "dog_01"))


def test_space_name_is_unique(warehouse: Warehouse) -> None:
    with warehouse.session() as session:
        session.add(Space(name="glove", kind="word", dim=50, n_concepts=3))
    with pytest.raises(DuplicateError, match='spaces: Duplicate key "name: glove"'):
        with warehouse.session() as session:
            session.add(Space(name="glove", kind="external", dim=8, n_concepts=2))


def test_layer_model_and_module_are_unique_together(warehouse: Warehouse) -> None:
    model_id = _model(warehouse)
    other_id = _model(warehouse, "vgg16")

    def layer(model: int, depth: int) -> Layer:
        return Layer(
            model_id=model,
            module="layer1.0",
            depth_index=depth,
            relative_depth=0.5,
            output_shape="[8]",
            pooling="avg",
            dim=8,
        )

    with warehouse.session() as session:
        session.add(layer(model_id, 0))
        session.add(layer(other_id, 0))  # same module name in another model is fine
    with pytest.raises(DuplicateError, match="layer1.0"):
        with warehouse.session() as session:
            session.add(layer(model_id, 1))


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (ResultRSA, {"method": "spearman", "rho": 0.5}),
        (Result2v2, {"distance": "pearson", "tie_tol": 1e-10, "n_pairs": 45, "accuracy": 0.75}),
    ],
)
def test_results_are_history_and_families_list_each_once(
    warehouse: Warehouse, model: type, extra: dict[str, object]
) -> None:
    """A recomputation of the same key is a second row (results are never replaced); a sweep
    lists a result at most once."""
    analysis_id = _analysis(warehouse)
    with warehouse.session() as session:
        first = model(**comparison(analysis_id), **extra)
        session.add_all([first, model(**comparison(analysis_id), **extra)])
        session.flush()
        sweep = add_sweep(session, [("t", first.result_id, None)], seed=7)
        sweep_id, result_id = sweep.sweep_id, first.result_id
    with warehouse.session() as session:
        assert session.scalar(select(func.count()).select_from(model)) == 2
    with pytest.raises(DuplicateError, match="sweep_members"):
        with warehouse.session() as session:
            session.add(SweepMember(sweep_id=sweep_id, test="t", result_id=result_id))


def test_statistics_keep_float64_precision(warehouse: Warehouse) -> None:
    """Results are stored as DOUBLE: a FLOAT column would round them to ~7 digits."""
    analysis_id = _analysis(warehouse)
    rho = 0.123456789012345
    p = 1.0 / 3.0
    with warehouse.session() as session:
        session.add(
            ResultRSA(
                **comparison(analysis_id, p_value=p, null_mean=p / 7, ci_low=-rho),
                method="spearman",
                rho=rho,
            )
        )
    with warehouse.session() as session:
        row = session.scalars(select(ResultRSA)).one()
        session.expunge_all()
    assert row.rho == rho
    assert row.p_value == p
    assert row.null_mean == p / 7
    assert row.ci_low == -rho


def test_json_text_columns_round_trip(warehouse: Warehouse) -> None:
    doc = {"resize": 256, "mean": [0.485, 0.456, 0.406], "name": "ünïcode"}
    model_id = _model(warehouse)
    with warehouse.session() as session:
        session.get(VisionModel, model_id).preprocessing = json.dumps(doc)
    with warehouse.session() as session:
        assert json.loads(session.get(VisionModel, model_id).preprocessing) == doc
