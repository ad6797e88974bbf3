"""Per-image scores of a space: load its image level, score each image against the concept
centroids (:mod:`semwh.analyze.exemplars`), store one ``image_scores`` row per image.

The rows of a space and similarity are replaced whole, in one transaction with the
``analysis_runs`` row that records how they were computed: ``image_scores`` always holds one
computation per (space, similarity), keyed by stimulus, ready to join with a lab's per-image
data (named queries ``image_scores`` and ``image_scores_join_csv``). Each row carries the
space's content hash, so a row computed before the space changed can be told apart.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import delete, insert

from semwh.analyze.exemplars import EXEMPLAR_SIMILARITIES, ExemplarScores, exemplar_scores
from semwh.errors import ConfigError, DegenerateInputError
from semwh.measures import analysis_version
from semwh.progress import Progress, check_progress, report
from semwh.runs import result_rows
from semwh.runs.recovery import recovery_layers
from semwh.vectors import SpaceVectors, get_space, load_space
from semwh.vectors.store import image_files_query
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ImageScore, Space, VectorFile

KIND = "image_scores"


@dataclass(frozen=True)
class ImageScoreRun:
    """What :func:`score_images` stored for one space.

    Attributes:
        space: The space.
        similarity: ``pearson`` or ``cosine``.
        n_images: Images of the space.
        n_scored: Images scored (rows stored).
        n_skipped: Images not scored: the only image of their concept.
        n_correct: Scored images whose nearest concept centroid is their own.
        n_concepts: Concept centroids compared.
        space_sha256: The space's content hash the rows carry.
        analysis_id: The ``analysis_runs`` row of the computation.
        seconds: Time taken to load, score and store.
    """

    space: str
    similarity: str
    n_images: int
    n_scored: int
    n_skipped: int
    n_correct: int
    n_concepts: int
    space_sha256: str | None
    analysis_id: int
    seconds: float

    @property
    def accuracy(self) -> float:
        """Share of scored images whose nearest centroid is their own (NaN when none)."""
        return self.n_correct / self.n_scored if self.n_scored else float("nan")


def image_score_spaces(
    wh: Warehouse, spaces: Sequence[str] = (), model: str | None = None
) -> list[str]:
    """The spaces to score: ``spaces``, then every layer space of ``model`` (in depth order),
    each once.

    Raises:
        ConfigError: Neither spaces nor a model.
        NotFoundError: An unknown model, or a model without layer spaces.
    """
    names = list(spaces)
    if model is not None:
        names += [s.name for s in recovery_layers(wh, model, None)]
    if not names:
        raise ConfigError("name the spaces to score, or a model (--model) for all its layers")
    return list(dict.fromkeys(names))


def score_images(
    wh: Warehouse,
    spaces: str | Sequence[str] = (),
    *,
    model: str | None = None,
    similarity: str = "pearson",
    progress: Progress | None = None,
) -> list[ImageScoreRun]:
    """Score every image of each space against its concept centroids and store the rows.

    For each image, the centroid of every concept is the mean of its images' vectors, the
    image itself left out of its own concept's centroid; the image's row holds the nearest
    concept, whether it is its own (``correct``), the ``margin`` (similarity to its own
    centroid minus the best other), its own concept's ``rank`` (1 = most similar; a tie
    counts against the image) and its own similarity (:func:`semwh.analyze.exemplars.
    exemplar_scores`). An image that is the only one of its concept is skipped and counted.
    The rows of each (space, similarity) replace those stored before, in one transaction
    with an ``analysis_runs`` row (kind ``image_scores``) that records the parameters and
    input hashes; each space is stored as soon as it is scored, so an error in a later
    space leaves the earlier ones stored. Every name is checked before any is scored.

    Args:
        wh: The warehouse.
        spaces: Spaces with an image level (a layer ``MODEL/LAYER``; a space ingested with
            ``--level image``).
        model: A vision model: all of its layer spaces, after ``spaces``.
        similarity: ``pearson`` (default) or ``cosine``.
        progress: Told the images scored of each space (``image scores SPACE``).

    Returns:
        One summary per space, in the order scored.

    Raises:
        ConfigError: An unknown similarity, no spaces, a space without an image level, or
            an RDM space (dissimilarities, not vectors).
        NotFoundError: An unknown space or model.
        DegenerateInputError: Fewer than two concepts, every concept with a single image,
            or degenerate vectors (the message names the images or concepts).
    """
    check_progress(progress)
    if similarity not in EXEMPLAR_SIMILARITIES:
        raise ConfigError(
            f"unknown similarity {similarity!r} for --similarity "
            f"(choose {', '.join(EXEMPLAR_SIMILARITIES)})"
        )
    chosen = [spaces] if isinstance(spaces, str) else list(spaces)
    names = image_score_spaces(wh, chosen, model)
    with wh.session() as session:  # every name checked before any work
        kinds = {name: get_space(session, name).kind for name in names}
    for name, kind in kinds.items():
        if kind == "rdm":
            raise ConfigError(
                f"space {name!r} holds dissimilarities between stimuli (an RDM), not vectors: "
                "image scores need each image's vector (a layer, or a space ingested with "
                "`semwh ingest space NAME FILE --level image`)"
            )
    return [_score_space(wh, name, similarity, progress) for name in names]


def _score_space(
    wh: Warehouse, name: str, similarity: str, progress: Progress | None
) -> ImageScoreRun:
    start = time.perf_counter()
    vectors = load_space(wh, name, level="image")
    stimuli = vectors.concept_ids
    concepts = list(vectors.item_concepts or ())
    what = f"image scores {name}"
    scores = exemplar_scores(
        vectors.matrix,
        concepts,
        similarity=similarity,
        labels=stimuli,
        space=name,
        progress=lambda done, total: report(progress, what, done, total),
    )
    if scores.n_scored == 0:
        raise DegenerateInputError(
            f"space {name!r}: each of its {len(stimuli)} images is the only image of its "
            "concept, so no image has a centroid of its own concept to be scored against; "
            "image scores need concepts with two or more images"
        )
    with wh.session() as session:
        space = get_space(session, name)
        assert vectors.image_ids is not None
        image_ids = [vectors.image_ids[i] for i in scores.index]
        input_hashes = {
            name: space.content_sha256,
            "image_files": _image_files(wh, session, space),
        }
        params = {
            "space": name,
            "similarity": similarity,
            "tie_tol": scores.tie_tol,
            "analysis_version": analysis_version(KIND),
            "n_images": len(stimuli),
            "n_scored": scores.n_scored,
            "n_skipped": scores.n_skipped,
            "n_concepts": len(scores.concepts),
        }
        session.execute(
            delete(ImageScore).where(ImageScore.space == name, ImageScore.similarity == similarity)
        )
        run = result_rows.add_analysis_run(
            session,
            KIND,
            params,
            seed=None,
            input_hashes=input_hashes,
            device="cpu",
            seconds=time.perf_counter() - start,
        )
        session.execute(
            insert(ImageScore),
            _rows(vectors, scores, image_ids, space.content_sha256, run.analysis_id),
        )
        analysis_id = int(run.analysis_id)
    return ImageScoreRun(
        space=name,
        similarity=similarity,
        n_images=len(stimuli),
        n_scored=scores.n_scored,
        n_skipped=scores.n_skipped,
        n_correct=int(scores.correct.sum()),
        n_concepts=len(scores.concepts),
        space_sha256=space.content_sha256,
        analysis_id=analysis_id,
        seconds=time.perf_counter() - start,
    )


def _rows(
    vectors: SpaceVectors,
    scores: ExemplarScores,
    image_ids: list[int],
    space_sha256: str | None,
    analysis_id: int,
) -> list[dict[str, Any]]:
    names = scores.concepts
    return [
        {
            "space": vectors.name,
            "similarity": scores.similarity,
            "stimulus": vectors.concept_ids[i],
            "image_id": image_id,
            "concept": names[own],
            "space_sha256": space_sha256,
            "n_concepts": len(names),
            "n_images": n_images,
            "nearest_concept": names[nearest],
            "correct": correct,
            "margin": margin,
            "rank": rank,
            "own_similarity": own_sim,
            "analysis_id": analysis_id,
        }
        for i, image_id, own, n_images, nearest, correct, margin, rank, own_sim in zip(
            scores.index.tolist(),
            image_ids,
            scores.concept.tolist(),
            scores.n_images.tolist(),
            scores.nearest.tolist(),
            scores.correct.tolist(),
            scores.margin.tolist(),
            scores.rank.tolist(),
            scores.own_similarity.tolist(),
            strict=True,
        )
    ]


def _image_files(wh: Warehouse, session: Any, space: Space) -> str:
    """One hash of the content hashes of the space's per-image vector files."""
    query = image_files_query(wh, session, space).with_only_columns(VectorFile.sha256)
    hashes = session.scalars(query.order_by(VectorFile.path)).all()
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


IMAGE_SCORE_SUMMARY = pa.schema(
    [
        ("space", pa.string()),
        ("similarity", pa.string()),
        ("n_images", pa.int64()),
        ("n_scored", pa.int64()),
        ("n_skipped", pa.int64()),
        ("n_concepts", pa.int64()),
        ("accuracy", pa.float64()),
        ("analysis_id", pa.int64()),
    ]
)


def image_score_table(runs: Sequence[ImageScoreRun]) -> pa.Table:
    """The summaries as one table (one row per space)."""
    return pa.Table.from_pylist(
        [
            {
                "space": r.space,
                "similarity": r.similarity,
                "n_images": r.n_images,
                "n_scored": r.n_scored,
                "n_skipped": r.n_skipped,
                "n_concepts": r.n_concepts,
                "accuracy": None if np.isnan(r.accuracy) else r.accuracy,
                "analysis_id": r.analysis_id,
            }
            for r in runs
        ],
        schema=IMAGE_SCORE_SUMMARY,
    )
