"""A small warehouse of synthetic results with known answers, for query and report tests.

Rows go through the ORM and the real vectors store into a migrated DuckDB file; only the
statistics are made up (chosen so that peaks, first significant layers and rates are known).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    Concept,
    Layer,
    PermutationNull,
    Prediction,
    RecoveryImage,
    Result2v2,
    ResultRecovery,
    ResultRSA,
    Space,
    VisionModel,
)
from tests.factories import add_analysis_run, add_sweep, comparison, image_row

WNIDS = [f"n{i:08d}" for i in range(1, 9)]
NAMES = ["dog", "cat", "car", "bus", "apple", "pear", "chair", "table"]
LAYERS = ["l0", "l1", "l2", "l3"]
WORD_SPACE = "words"
# Per model: 2 vs 2 accuracy, its FDR p, RSA rho for layers l0..l3.
CURVES = {
    "toy": ([0.60, 0.70, 0.90, 0.85], [0.20, 0.01, 0.001, 0.002], [0.05, 0.10, 0.20, 0.30]),
    "toy-random": ([0.55, 0.56, 0.54, 0.55], [0.5, 0.5, 0.6, 0.5], [0.01, 0.02, 0.00, 0.01]),
}
RECOVERY = {"toy": [(10, 4), (10, 6), (10, 8), (10, 7)]}


@dataclass(frozen=True)
class Synthetic:
    """Known facts about the synthetic warehouse."""

    concept_ids: list[str]
    models: list[str]
    layers: list[str]
    word_space: str


def build_synthetic(wh: Warehouse, seed: int = 0) -> Synthetic:
    """Fill ``wh`` with concepts, images, two models' layer spaces, a word space and results."""
    rng = np.random.default_rng(seed)
    with wh.session() as s:
        # ImageNet classes: the concept id is the wnid, with a class index for top-1 accuracy.
        for index, (wnid, name) in enumerate(zip(WNIDS, NAMES, strict=True)):
            s.add(
                Concept(concept=wnid, wnid=wnid, name=name, origin="images", imagenet_index=index)
            )
        s.flush()
        image_id = 0
        for wnid in WNIDS:
            for k in range(3):
                image_id += 1
                s.add(
                    image_row(
                        wnid,
                        image_id,
                        image_id=image_id,
                        path=f"/data/{wnid}_{k}.jpg",
                        width=64,
                        height=64,
                    )
                )
        for model in CURVES:
            s.add(
                VisionModel(
                    name=model,
                    architecture="toy",
                    weights="none" if model.endswith("-random") else "file:toy.pt",
                    preprocessing="{}",
                )
            )
        analysis_id = add_analysis_run(s, seed=seed, semwh_version="test").analysis_id
    save_space(wh, WORD_SPACE, "word", WNIDS, rng.normal(size=(len(WNIDS), 5)))
    members: list[tuple[str, int, float]] = []
    for model, (acc, p_fdr, rho) in CURVES.items():
        with wh.session() as s:
            vm = s.query(VisionModel).filter_by(name=model).one()
            layer_ids = []
            for d, layer in enumerate(LAYERS):
                row = Layer(
                    model_id=vm.model_id,
                    module=layer,
                    depth_index=d,
                    relative_depth=d / (len(LAYERS) - 1),
                    output_shape="[6]",
                    pooling="avg",
                    dim=6,
                )
                s.add(row)
                s.flush()
                layer_ids.append(row.layer_id)
        for d, layer in enumerate(LAYERS):
            save_space(
                wh,
                f"{model}/{layer}",
                "layer",
                WNIDS,
                rng.normal(size=(len(WNIDS), 6)),
                model=model,
                layer=layer,
                layer_id=layer_ids[d],
                depth_index=d,
                relative_depth=d / (len(LAYERS) - 1),
            )
        with wh.session() as s:
            for d, layer in enumerate(LAYERS):
                common = comparison(
                    analysis_id,
                    space_a=f"{model}/{layer}",
                    space_b=WORD_SPACE,
                    n_concepts=len(WNIDS),
                    concepts_sha256="c" * 64,
                    seed=seed,
                    space_a_sha256=_hash(s, f"{model}/{layer}"),
                    space_b_sha256=_hash(s, WORD_SPACE),
                    bootstrap=0,
                    analysis_version=1,
                )
                t = Result2v2(
                    **common,
                    distance="pearson",
                    n_pairs=28,
                    tie_tol=1e-10,
                    accuracy=acc[d],
                    p_value=p_fdr[d] / 2,
                    null_mean=0.5,
                    null_q95=0.62,
                )
                # An older, smaller run of the same pair, from an earlier version of the word
                # space: the curves must ignore it, stale_results lists it.
                old = Result2v2(
                    **{**common, "n_permutations": 10, "space_b_sha256": "e" * 64},
                    distance="pearson",
                    n_pairs=28,
                    tie_tol=1e-10,
                    accuracy=0.01,
                    p_value=0.9,
                )
                r = ResultRSA(
                    **common,
                    method="spearman",
                    rho=rho[d],
                    p_value=p_fdr[d] / 2,
                    null_mean=0.0,
                    null_q95=0.08,
                )
                s.add_all([t, old, r])
                s.flush()
                # The curves' family: the 100-permutation rows, with these FDR values.
                members.extend([("2v2", t.result_id, p_fdr[d]), ("rsa", r.result_id, p_fdr[d])])
                s.add(
                    PermutationNull(
                        test="2v2",
                        result_id=t.result_id,
                        n_permutations=100,
                        seed=seed,
                        values=json.dumps(list(rng.uniform(0.4, 0.6, 100))),
                    )
                )
    with wh.session() as s:
        # Top-1 predictions of "toy": the first two images of each concept right, the third
        # taken for the next concept.
        for i in range(len(WNIDS) * 3):
            true = WNIDS[i // 3]
            pred = true if i % 3 < 2 else WNIDS[(i // 3 + 1) % len(WNIDS)]
            s.add(
                Prediction(
                    model="toy", image_id=i + 1, rank=1, wnid=pred, class_index=0, probability=0.5
                )
            )
        for d, (n, k) in enumerate(RECOVERY["toy"]):
            rec = ResultRecovery(
                analysis_id=analysis_id,
                model="toy",
                layer=LAYERS[d],
                space_a=f"toy/{LAYERS[d]}",
                space_b=WORD_SPACE,
                n_concepts=len(WNIDS),
                concepts_sha256="c" * 64,
                similarity="pearson",
                n_images=n,
                n_success=k,
                accuracy=k / n,
                p_value=0.5,
                space_a_sha256=_hash(s, f"toy/{LAYERS[d]}"),
                space_b_sha256=_hash(s, WORD_SPACE),
                inputs_sha256="d" * 64,
                analysis_version=2,
                n_no_prediction=0,
                n_visual=0,
                n_visual_success=0,
            )
            s.add(rec)
            s.flush()
            members.append(("recovery", rec.result_id, 0.5))
            # The misclassified images (every third): success at depth >= 2 only.
            for c in range(len(WNIDS)):
                image = c * 3 + 3
                s.add(
                    RecoveryImage(
                        result_id=rec.result_id,
                        image_id=image,
                        true_concept=WNIDS[c],
                        predicted_concept=WNIDS[(c + 1) % len(WNIDS)],
                        success=d >= 2,
                        score_true=0.1,
                        score_predicted=0.0,
                        rank_true=1,
                    )
                )
    with wh.session() as s:
        add_sweep(
            s,
            members,
            models=json.dumps(list(CURVES)),
            word_spaces=json.dumps([WORD_SPACE]),
            tests=json.dumps(["2v2", "rsa", "recovery"]),
            seed=seed,
        )
    return Synthetic(
        concept_ids=list(WNIDS), models=list(CURVES), layers=list(LAYERS), word_space=WORD_SPACE
    )


def _hash(session, name: str) -> str | None:  # noqa: ANN001
    return session.query(Space.content_sha256).filter_by(name=name).scalar()


def test_synthetic_warehouse_has_every_results_table(warehouse: Warehouse) -> None:
    """The builder itself: each table the queries read gets rows."""
    from semwh.warehouse.readonly import run_sql

    build_synthetic(warehouse)
    counts = run_sql(
        warehouse,
        "SELECT (SELECT count(*) FROM results_2v2), (SELECT count(*) FROM results_rsa), "
        "(SELECT count(*) FROM results_recovery), (SELECT count(*) FROM recovery_images), "
        "(SELECT count(*) FROM predictions), (SELECT count(*) FROM vectors)",
    ).rows()[0]
    assert counts == (16, 8, 4, 32, 24, 8 * 9)
