"""1 vs 2 recovery per layer of a model: assemble inputs, run the pure test, store rows.

The test applies only where the model's predictions are concepts: a model whose classes
(ImageNet-1k, by wnid) cover too few of its images' concepts (a lab's own stimuli such as
THINGS), or whose images give nothing to test, is skipped with a stored reason, never stored as
rows of zeros.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import pyarrow as pa
from sqlalchemy import select

from semwh.analyze import MIN_CONCEPTS, RecoveryResult
from semwh.analyze import recovery as analyze_recovery
from semwh.errors import DegenerateInputError, NotFoundError
from semwh.ingest.concepts import wnid_concepts
from semwh.ingest.imagenet import try_imagenet_index
from semwh.measures import analysis_version
from semwh.runs import families, result_rows
from semwh.runs.provenance import concepts_sha256, params_sha256
from semwh.vectors import SpaceVectors, get_space, layer_spaces, load_image_vectors, load_space
from semwh.vectors.store import image_files_query
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    Concept,
    Image,
    Prediction,
    RecoveryImage,
    ResultRecovery,
    Space,
    VectorFile,
    VisionModel,
)
from semwh.warehouse.writers import results_lock, transaction

SIMILARITY = "pearson"


@dataclass(frozen=True)
class RecoveryInputs:
    """Everything the pure recovery test needs for one layer.

    Attributes:
        space_a: The layer space ``MODEL/LAYER``.
        space_b: The word space.
        concept_ids: Concepts K with both images at this layer and word vectors, sorted.
        image_ids: Images whose true class is in K, ordered by image_id.
        image_concepts: Their true classes.
        activations: Their pooled activations at the layer (n_images x d).
        predicted: Top-1 prediction of each image ('' where none is stored).
        word_concepts: Concepts of ``words``: K and the predicted concepts with word vectors.
        words: Their word vectors (rows in ``word_concepts`` order).
        input_hashes: Content hashes of the layer space, its image vector files, the word
            space and the predictions used (and of ``classes`` when given).
        classes: The concepts of K that are classes of the model, when some of K are not
            (their images are not tested); None when every concept of K is a class.
    """

    model: str
    layer: str
    space_a: str
    space_b: str
    concept_ids: list[str]
    image_ids: np.ndarray
    image_concepts: list[str]
    activations: np.ndarray
    predicted: list[str]
    word_concepts: list[str]
    words: np.ndarray
    input_hashes: dict[str, Any]
    classes: list[str] | None = None

    @property
    def concepts_sha256(self) -> str:
        return concepts_sha256(self.concept_ids)

    @property
    def inputs_sha256(self) -> str:
        """One hash of every input: both spaces, the image vector files and predictions."""
        return params_sha256(self.input_hashes)


def recovery_layers(wh: Warehouse, model: str, layers: Sequence[str] | None) -> list[Space]:
    """The layer spaces of ``model`` to test, in forward order.

    Raises:
        NotFoundError: Unknown model, a model without layer spaces, or unknown layers.
    """
    with wh.session() as session:
        if session.scalar(select(VisionModel.model_id).where(VisionModel.name == model)) is None:
            known = ", ".join(session.scalars(select(VisionModel.name)).all()) or "none"
            raise NotFoundError(f"unknown vision model {model!r} (stored: {known})")
        spaces = layer_spaces(session, model)
    if not spaces:
        raise NotFoundError(
            f"vision model {model!r} has no layer spaces: run `semwh extract` for it first"
        )
    if layers is None:
        return spaces
    by_layer = {s.layer: s for s in spaces}
    missing = [name for name in layers if name not in by_layer]
    if missing:
        raise NotFoundError(
            f"model {model!r} has no layer(s) {', '.join(missing)} "
            f"(layers: {', '.join(str(s.layer) for s in spaces)})"
        )
    return [by_layer[name] for name in dict.fromkeys(layers)]


def top1_predictions(wh: Warehouse, model: str) -> dict[int, str]:
    """image_id -> the concept of ``model``'s top-1 class.

    A class (an ImageNet wnid) is the concept that has that wnid, when exactly one has it;
    otherwise it keeps the class's wnid (a concept of that id, or none).
    """
    with wh.session() as session:
        rows = session.execute(
            select(Prediction.image_id, Prediction.wnid).where(
                Prediction.model == model, Prediction.rank == 1
            )
        ).all()
        by_wnid = wnid_concepts(session)
    return {int(image_id): by_wnid.get(wnid, wnid) for image_id, wnid in rows}


def _sha256_lines(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class ClassCover:
    """Which concepts of a model's images are among the model's classes.

    Attributes:
        model: The vision model.
        head: What its classes are, in words (``ImageNet-1k, by wnid``, or a head of its own
            whose predictions are stored as ``class:N``).
        concepts: The concepts of the images it predicted that have vectors in the word
            space, sorted: those the test could use.
        classes: Those of ``concepts`` that are classes of the model (a prediction of the
            model can be that concept), sorted.
    """

    model: str
    head: str
    concepts: list[str]
    classes: list[str]


def class_cover(wh: Warehouse, model: str, word: SpaceVectors) -> ClassCover:
    """Which of the concepts of ``model``'s images (with vectors in ``word``) its classes
    cover.

    A concept is a class of the model when a prediction of the model becomes that concept by
    :func:`top1_predictions`' rule: a class some stored prediction names (at any rank) or,
    for a model whose predictions are ImageNet wnids, one of the 1000 ImageNet-1k classes
    (the concepts with an ``imagenet_index``, and the installed class index's wnids).
    """
    with wh.session() as session:
        predicted = set(
            session.scalars(select(Prediction.wnid).where(Prediction.model == model).distinct())
        )
        image_concepts = set(
            session.scalars(
                select(Image.concept)
                .join(Prediction, Prediction.image_id == Image.image_id)
                .where(Prediction.model == model, Prediction.rank == 1)
                .distinct()
            )
        )
        by_wnid = wnid_concepts(session)
        own_head = any(w.startswith("class:") for w in predicted)
        wnids = set(predicted)
        if not own_head:
            wnids.update(
                session.scalars(select(Concept.wnid).where(Concept.imagenet_index.is_not(None)))
            )
            index = try_imagenet_index()
            if index is not None:
                wnids.update(c.wnid for c in index.classes)
    class_concepts = {by_wnid.get(w, w) for w in wnids}
    in_words = set(word.concept_ids)
    concepts = sorted(c for c in image_concepts if c in in_words)
    return ClassCover(
        model=model,
        head="a head of its own, predictions class:N" if own_head else "ImageNet-1k, by wnid",
        concepts=concepts,
        classes=[c for c in concepts if c in class_concepts],
    )


def not_covered_reason(cover: ClassCover, word_space: str) -> str | None:
    """Why 1 vs 2 recovery does not apply to ``cover``'s model, or None when it may.

    None also when the word space itself shares too few concepts with the images: that is
    an error of the layer's inputs (:func:`recovery_inputs`), not a property of the model.
    """
    n, k = len(cover.concepts), len(cover.classes)
    if n < MIN_CONCEPTS or k >= MIN_CONCEPTS:
        return None
    which = f" ({', '.join(cover.classes)})" if cover.classes else ""
    return (
        f"{k} of the {n} concepts of the images of {cover.model} (with vectors in "
        f"{word_space!r}) are classes of {cover.model} ({cover.head}){which}; 1 vs 2 "
        f"recovery needs the model's predictions to be concepts, of at least {MIN_CONCEPTS} "
        "of them"
    )


def nothing_to_test_reason(result: RecoveryResult, model: str, word_space: str) -> str:
    """Why a layer's test found no image to test (its counts say which condition failed)."""
    own = (
        f"{result.n_skipped_not_a_class} of a concept that is not a class of {model}, "
        if result.n_skipped_not_a_class
        else ""
    )
    return (
        f"no image of {model} to test against {word_space!r}: of its images, "
        f"{result.n_misclassified} are misclassified, {own}{result.n_skipped_no_word_vector} "
        f"with a concept or prediction without a word vector and "
        f"{result.n_skipped_single_image} the only image of their concept; 1 vs 2 recovery "
        "needs misclassified images whose concept and prediction both have word vectors"
    )


def recovery_inputs(
    wh: Warehouse,
    layer: Space,
    word: SpaceVectors,
    predictions: dict[int, str],
    classes: Collection[str] | None = None,
) -> RecoveryInputs:
    """Assemble one layer's inputs: images of concepts with word vectors, their predictions.

    ``classes`` are the concepts that are classes of the layer's model (default: those of
    :func:`class_cover`); images of the other concepts are not tested.

    Raises:
        DegenerateInputError: Fewer than four concepts with both images and word vectors.
    """
    images = load_image_vectors(wh, layer.name)
    in_words = set(word.concept_ids)
    keep = np.array([w in in_words for w in images.concept_ids], dtype=bool)
    concept_ids = sorted({w for w, k in zip(images.concept_ids, keep, strict=True) if k})
    if len(concept_ids) < MIN_CONCEPTS:
        raise DegenerateInputError(
            f"layer space {layer.name!r} and word space {word.name!r} share {len(concept_ids)} "
            f"concepts with images ({', '.join(concept_ids) or 'none'}); recovery needs at least "
            f"{MIN_CONCEPTS}"
        )
    if classes is None:
        classes = class_cover(wh, str(layer.model), word).classes
    class_set = set(classes)
    # Only a lab's own concepts outside the model's classes add a key to the inputs: the
    # inputs of a model whose classes are all the concepts keep the hash they always had.
    own = [c for c in concept_ids if c not in class_set]
    tested_classes = [c for c in concept_ids if c in class_set] if own else None
    image_ids = images.image_ids[keep]
    image_concepts = [w for w, k in zip(images.concept_ids, keep, strict=True) if k]
    predicted = [predictions.get(int(i), "") for i in image_ids]
    with wh.session() as session:
        files = session.scalars(
            image_files_query(wh, session, layer)
            .with_only_columns(VectorFile.sha256)
            .order_by(VectorFile.shard_index, VectorFile.path)
        ).all()
        word_hash = get_space(session, word.name).content_sha256
    used = [f"{int(i)}:{p}" for i, p in zip(image_ids, predicted, strict=True)]
    # The test needs word vectors of K and of every predicted concept, which may have a word
    # vector but no images (the word vectors of the rest of the space play no part).
    word_concepts = sorted(set(concept_ids) | {p for p in predicted if p in in_words})
    input_hashes = {
        layer.name: layer.content_sha256,
        "image_files": _sha256_lines(list(files)),
        word.name: word_hash,
        "predictions": _sha256_lines(used),
    }
    if tested_classes is not None:
        input_hashes["classes"] = concepts_sha256(tested_classes)
    return RecoveryInputs(
        model=str(layer.model),
        layer=str(layer.layer),
        space_a=layer.name,
        space_b=word.name,
        concept_ids=concept_ids,
        image_ids=image_ids,
        image_concepts=image_concepts,
        activations=images.matrix[keep],
        predicted=predicted,
        word_concepts=word_concepts,
        words=word.subset(word_concepts),
        input_hashes=input_hashes,
        classes=tested_classes,
    )


@dataclass(frozen=True)
class RecoveryRecord:
    """The pure recovery test's outcome for one layer, before storage."""

    inputs: RecoveryInputs
    result: RecoveryResult
    seconds: float


def run_recovery_layer(inputs: RecoveryInputs) -> RecoveryRecord:
    """Run the pure 1 vs 2 test on one layer's inputs (no warehouse access).

    Raises:
        DegenerateInputError: Degenerate activations or word vectors; the message names the
            images or concepts, the layer space and the word space.
    """
    start = time.perf_counter()
    result = analyze_recovery(
        inputs.activations,
        inputs.image_concepts,
        inputs.predicted,
        inputs.word_concepts,
        inputs.words,
        image_ids=inputs.image_ids.tolist(),
        layer=inputs.space_a,
        word_space=inputs.space_b,
        classes=inputs.classes,
    )
    return RecoveryRecord(inputs=inputs, result=result, seconds=time.perf_counter() - start)


def _stored(session: Any, inputs: RecoveryInputs) -> ResultRecovery | None:
    """The newest stored row computed from exactly these inputs by this algorithm version.

    A row of no tested image (stored by versions before such layers were skipped) answers
    nothing: the layer is computed again and skipped with its reason.
    """
    return session.scalars(
        select(ResultRecovery)
        .where(
            ResultRecovery.n_images > 0,
            ResultRecovery.space_a == inputs.space_a,
            ResultRecovery.space_b == inputs.space_b,
            ResultRecovery.concepts_sha256 == inputs.concepts_sha256,
            ResultRecovery.similarity == SIMILARITY,
            ResultRecovery.inputs_sha256 == inputs.inputs_sha256,
            ResultRecovery.analysis_version == analysis_version("recovery"),
        )
        .order_by(ResultRecovery.result_id.desc())
    ).first()


def _opt(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _add_rows(session: Any, analysis_id: int, record: RecoveryRecord) -> ResultRecovery:
    inputs, res = record.inputs, record.result
    out = res.outcomes
    row = ResultRecovery(
        analysis_id=analysis_id,
        model=inputs.model,
        layer=inputs.layer,
        space_a=inputs.space_a,
        space_b=inputs.space_b,
        n_concepts=int(res.n_concepts),
        concepts_sha256=inputs.concepts_sha256,
        space_a_sha256=inputs.input_hashes.get(inputs.space_a),
        space_b_sha256=inputs.input_hashes.get(inputs.space_b),
        inputs_sha256=inputs.inputs_sha256,
        analysis_version=analysis_version("recovery"),
        similarity=SIMILARITY,
        n_images=int(res.n_images),
        n_success=int(res.n_success),
        accuracy=_opt(res.success_rate),
        p_value=_opt(res.p_value),
        n_no_prediction=int(res.n_no_prediction),
        n_visual=int(res.n_visual),
        n_visual_success=int(np.count_nonzero(out.visual_success)),
        visual_accuracy=_opt(res.visual_success_rate),
        visual_p_value=_opt(res.visual_p_value),
        mean_rank_true=_opt(res.mean_rank),
        median_rank_true=_opt(res.median_rank),
        n_permutations=0,
        seed=None,
    )
    session.add(row)
    session.flush()
    for k in range(len(out.image_id)):
        session.add(
            RecoveryImage(
                result_id=row.result_id,
                image_id=int(out.image_id[k]),
                true_concept=out.true_concept[k],
                predicted_concept=out.predicted_concept[k],
                success=bool(out.success[k]),
                score_true=float(out.score_true[k]),
                score_predicted=float(out.score_predicted[k]),
                visual_success=bool(out.visual_success[k]) if out.visual_defined[k] else None,
                rank_true=int(out.rank_true[k]),
            )
        )
    return row


@dataclass(frozen=True)
class RecoverySkip:
    """Layers of a model that 1 vs 2 recovery left out against a word space, and why.

    Stored as an ``analysis_runs`` row of kind ``recovery`` with no result rows, whose
    parameters hold ``skipped`` (the reason), ``layers``, ``n_concepts`` and
    ``n_class_concepts`` (the named query ``recovery_skipped`` lists them).

    Attributes:
        model: The vision model.
        word_space: The word space.
        layers: The layers left out, in forward order.
        reason: One line naming the model, the counts and what the test needs.
        analysis_id: The ``analysis_runs`` row that records it.
    """

    model: str
    word_space: str
    layers: list[str]
    reason: str
    analysis_id: int


@dataclass(frozen=True)
class RecoveryReport(Sequence[ResultRecovery]):
    """What :func:`recovery` stored: the rows, in layer order (the report is a sequence of
    them), and the layers it skipped because the test does not apply.

    Attributes:
        rows: One stored (or found stored) ``results_recovery`` row per tested layer.
        skipped: Why the other layers were left out (empty when every layer was tested).
    """

    rows: list[ResultRecovery] = field(default_factory=list)
    skipped: list[RecoverySkip] = field(default_factory=list)

    @overload
    def __getitem__(self, index: int) -> ResultRecovery: ...

    @overload
    def __getitem__(self, index: slice) -> list[ResultRecovery]: ...

    def __getitem__(self, index: int | slice) -> ResultRecovery | list[ResultRecovery]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ResultRecovery]:
        return iter(self.rows)


def _record_skip(
    wh: Warehouse,
    cover: ClassCover,
    word_space: str,
    layers: Sequence[str],
    reason: str,
    input_hashes: dict[str, Any],
    force: bool,
) -> RecoverySkip:
    """Store why ``layers`` were skipped as an ``analysis_runs`` row; the same skip of the
    same inputs is found again (a new row only with ``force``)."""
    params = {
        "model": cover.model,
        "word_space": word_space,
        "layers": list(layers),
        "similarity": SIMILARITY,
        "analysis_version": analysis_version("recovery"),
        "skipped": reason,
        "n_concepts": len(cover.concepts),
        "n_class_concepts": len(cover.classes),
    }
    identity = {**params, "input_hashes": input_hashes}
    with wh.session() as session:
        known = None
        if not force:
            known = session.scalar(
                select(AnalysisRun.analysis_id)
                .where(
                    AnalysisRun.kind == "recovery",
                    AnalysisRun.params_sha256 == params_sha256(identity),
                )
                .order_by(AnalysisRun.analysis_id.desc())
                .limit(1)
            )
        if known is None:
            run = result_rows.add_analysis_run(
                session,
                "recovery",
                params,
                seed=None,
                input_hashes=input_hashes,
                device=None,
                seconds=None,
                identity=identity,
            )
            known = run.analysis_id
    return RecoverySkip(cover.model, word_space, list(layers), reason, int(known))


def recovery(
    wh: Warehouse,
    model: str,
    word_space: str,
    *,
    layers: Sequence[str] | None = None,
    force: bool = False,
) -> RecoveryReport:
    """1 vs 2 recovery of misclassified images' true class at each layer of ``model``.

    For every layer space ``MODEL/LAYER`` (or the given ``layers``), takes the images whose
    stored top-1 prediction differs from their concept, both concepts having word vectors in
    ``word_space``, runs :func:`semwh.analyze.recovery` on their pooled activations and stores
    one ``results_recovery`` row per layer and one ``recovery_images`` row per image. A layer
    already stored from the same inputs (both spaces, image vector files, predictions) by the
    same algorithm version is reused unless ``force``, which computes it again as a new row
    (older rows stay as history and in the sweeps that list them). Each row's p-value is the
    uncorrected binomial one: FDR belongs to a sweep's family.

    The test applies only where the model's predictions are concepts. Images of a concept
    that is not one of the model's classes (:func:`class_cover`: a lab's own concept without
    an ImageNet-1k class) are not misclassifications and are not tested; their concepts stay
    in K. When fewer than four of the concepts of the model's images (with word vectors) are
    classes of the model, or when no image has a misclassification to test, the layers are
    skipped: nothing is stored in ``results_recovery``, and the reason is returned in
    :attr:`RecoveryReport.skipped` and stored as an ``analysis_runs`` row
    (:class:`RecoverySkip`). A skip is not an error, so that a sweep or a lab's pipeline over
    a THINGS-style set carries on with its other analyses; the CLI tells it apart from
    success by its exit code (3).

    Returns:
        The stored rows, in layer order, with the skipped layers and why.

    Raises:
        NotFoundError: Unknown model, word space or layers; no stored predictions.
        DegenerateInputError: Fewer than four concepts with images and word vectors, or
            degenerate vectors.
    """
    spaces = recovery_layers(wh, model, layers)
    word = load_space(wh, word_space)
    predictions = top1_predictions(wh, model)
    if not predictions:
        raise NotFoundError(
            f"no predictions stored for vision model {model!r}: run `semwh extract` for it "
            "(it stores each image's top predictions)"
        )
    cover = class_cover(wh, model, word)
    reason = not_covered_reason(cover, word_space)
    if reason is not None:
        with wh.session() as session:
            word_hash = get_space(session, word_space).content_sha256
        hashes = {
            word_space: word_hash,
            "predictions": _sha256_lines([f"{i}:{p}" for i, p in sorted(predictions.items())]),
            "concepts": concepts_sha256(cover.concepts),
        }
        names = [str(s.layer) for s in spaces]
        return RecoveryReport(
            skipped=[_record_skip(wh, cover, word_space, names, reason, hashes, force)]
        )
    start = time.perf_counter()
    slots: list[ResultRecovery | RecoveryRecord] = []
    empty: list[RecoveryRecord] = []
    for space in spaces:
        inputs = recovery_inputs(wh, space, word, predictions, cover.classes)
        with wh.session() as session:
            row = _stored(session, inputs)
        if row is not None and not force:
            slots.append(row)
            continue
        record = run_recovery_layer(inputs)
        if record.result.n_images == 0:
            empty.append(record)  # a skip with its reason, never a row of zeros
        else:
            slots.append(record)

    seconds = time.perf_counter() - start

    def store(session: Any) -> list[ResultRecovery]:
        # Under the results lock a layer another process stored meanwhile (a second sweep
        # with recovery) is found and kept, never stored twice.
        results_lock(session, f"storing recovery of {model}")
        # Per slot, the stored row it stands for (None: computed here and stored below).
        fresh: list[ResultRecovery | None] = [
            s if isinstance(s, ResultRecovery) else None if force else _stored(session, s.inputs)
            for s in slots
        ]
        computed = [
            s
            for s, f in zip(slots, fresh, strict=True)
            if f is None and isinstance(s, RecoveryRecord)
        ]
        out: list[ResultRecovery] = []
        if computed:
            run = result_rows.add_analysis_run(
                session,
                "recovery",
                {
                    "model": model,
                    "word_space": word_space,
                    "layers": [s.inputs.layer for s in computed],
                    "similarity": SIMILARITY,
                    "analysis_version": analysis_version("recovery"),
                },
                seed=None,
                input_hashes={s.inputs.space_a: s.inputs.input_hashes for s in computed},
                device="cpu",
                seconds=seconds,
            )
        for slot, found in zip(slots, fresh, strict=True):
            if found is None and isinstance(slot, RecoveryRecord):
                out.append(_add_rows(session, run.analysis_id, slot))
            elif found is not None:
                out.append(session.get(ResultRecovery, found.result_id) or found)
        session.flush()
        return out

    rows = transaction(wh, store, what=f"storing recovery of {model}")
    skipped: list[RecoverySkip] = []
    by_reason: dict[str, list[RecoveryRecord]] = {}
    for record in empty:
        text = nothing_to_test_reason(record.result, model, word_space)
        by_reason.setdefault(text, []).append(record)
    for text, records in by_reason.items():
        per_layer: dict[str, Any] = {r.inputs.space_a: r.inputs.input_hashes for r in records}
        names = [r.inputs.layer for r in records]
        skipped.append(_record_skip(wh, cover, word_space, names, text, per_layer, force))
    return RecoveryReport(rows=rows, skipped=skipped)


RECOVERY_SCHEMA = pa.schema(
    [
        ("result_id", pa.int64()),
        ("analysis_id", pa.int64()),
        ("model", pa.string()),
        ("layer", pa.string()),
        ("space_b", pa.string()),
        ("n_concepts", pa.int64()),
        ("n_images", pa.int64()),
        ("n_success", pa.int64()),
        ("accuracy", pa.float64()),
        ("p_value", pa.float64()),
        ("n_no_prediction", pa.int64()),
        ("n_visual", pa.int64()),
        ("visual_accuracy", pa.float64()),
        ("visual_p_value", pa.float64()),
        ("mean_rank_true", pa.float64()),
        ("median_rank_true", pa.float64()),
    ]
)


def recovery_table(rows: Sequence[ResultRecovery]) -> pa.Table:
    """Stored recovery rows as an Arrow table."""
    return pa.Table.from_pylist(
        [{name: getattr(row, name) for name in RECOVERY_SCHEMA.names} for row in rows],
        schema=RECOVERY_SCHEMA,
    )


def sweep_recovery_table(rows: Sequence[ResultRecovery], p_fdr: families.FDR) -> pa.Table:
    """:func:`recovery_table` with a sweep's FDR p-value of each row."""
    table = recovery_table(rows)
    values = [families.p_fdr_of(p_fdr, row) for row in rows]
    return table.append_column("p_fdr", pa.array(values, type=pa.float64()))
