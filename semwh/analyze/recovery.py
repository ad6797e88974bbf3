"""The 1 vs 2 (recovery) test: can a misclassified image's concept be recovered at layer L?

DESIGN "Method definitions": for each image x whose top-1 prediction p differs from its
concept t (both with word vectors), e = x's pooled activation at L; c_k = mean activation of
concept k's images at L, x excluded from c_t; K' = K minus {t, p}; r[k] = Pearson(e, c_k),
w_t[k] = Pearson(w_t, w_k), w_p[k] = Pearson(w_p, w_k) for k in K'. Success iff
Pearson(r, w_t) > Pearson(r, w_p). K is the set of concepts that have both images and word
vectors. Images whose concept has no other image are skipped (c_t without x is undefined).
Given the model's classes, an image whose concept is not one of them (a lab's own concept the
model cannot predict) is not a misclassification and is not tested either; its concept stays
in K.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from semwh.analyze._checks import check_count, name_concepts
from semwh.analyze.similarity import CONSTANT_RTOL, similarity_matrix
from semwh.errors import DegenerateInputError, InputError

#: Images per chunk when building the leave-one-out concept means (bounds memory for wide
#: layers).
_CHUNK = 256


@dataclass(frozen=True)
class RecoveryOutcomes:
    """Per-image outcomes of :func:`recovery`, one entry per tested image.

    Attributes:
        image_index: row of the image in the inputs.
        image_id: the caller's image id (``image_ids``), or the row when none were given.
        true_concept: t.
        predicted_concept: p.
        success: Pearson(r, w_t) > Pearson(r, w_p).
        score_true: Pearson(r, w_t) over K'.
        score_predicted: Pearson(r, w_p) over K'.
        visual_defined: whether p has images (is in K), so the visual variant applies.
        visual_success: Pearson(e, c_t) > Pearson(e, c_p) (False where undefined).
        rank_true: rank of t among K by r (1 = the most similar concept mean; ties in
            t's favour).
    """

    image_index: np.ndarray
    image_id: np.ndarray
    true_concept: list[str]
    predicted_concept: list[str]
    success: np.ndarray
    score_true: np.ndarray
    score_predicted: np.ndarray
    visual_defined: np.ndarray
    visual_success: np.ndarray
    rank_true: np.ndarray


@dataclass(frozen=True)
class RecoveryResult:
    """Summary of the 1 vs 2 test for one layer and one word space.

    Attributes:
        n_images: images tested.
        n_success: successes among them.
        success_rate: n_success / n_images (NaN when none).
        p_value: one-sided binomial p of n_success against 0.5 (NaN when none).
        n_visual: tested images whose prediction has images (visual variant defined).
        visual_success_rate: success rate of the visual variant (NaN when none).
        visual_p_value: its one-sided binomial p against 0.5 (NaN when none).
        mean_rank: mean of rank_true (NaN when none).
        median_rank: median of rank_true (NaN when none).
        n_concepts: |K|, the concepts with both images and word vectors.
        n_misclassified: images with p != t.
        n_skipped_no_word_vector: misclassified images whose t or p lacks a word vector.
        n_skipped_single_image: misclassified images whose concept has no other image.
        n_no_prediction: images with no prediction (an empty string), never tested.
        outcomes: per-image outcomes.
        n_skipped_not_a_class: misclassified images whose concept is not one of the model's
            classes (``classes``), never tested; the two counts above leave them out.
    """

    n_images: int
    n_success: int
    success_rate: float
    p_value: float
    n_visual: int
    visual_success_rate: float
    visual_p_value: float
    mean_rank: float
    median_rank: float
    n_concepts: int
    n_misclassified: int
    n_skipped_no_word_vector: int
    n_skipped_single_image: int
    n_no_prediction: int
    outcomes: RecoveryOutcomes = field(repr=False)
    n_skipped_not_a_class: int = 0


def _standardise_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale rows to unit norm; also return a mask of (near-)constant rows."""
    z = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(z, axis=1)
    scale = np.abs(x).max(axis=1)
    bad = norms <= CONSTANT_RTOL * np.sqrt(x.shape[1]) * np.maximum(scale, 1e-300)
    return z / np.where(bad, 1.0, norms)[:, None], bad


def _masked_pearson(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Row-wise Pearson of x and y over the entries where mask is True."""
    m = mask.astype(np.float64)
    count = m.sum(axis=1, keepdims=True)
    xc = (x - (x * m).sum(axis=1, keepdims=True) / count) * m
    yc = (y - (y * m).sum(axis=1, keepdims=True) / count) * m
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))


def _binom_p(successes: int, n: int) -> float:
    if n == 0:
        return float("nan")
    return float(stats.binomtest(successes, n, 0.5, alternative="greater").pvalue)


def recovery(
    activations: np.ndarray,
    image_concepts: Sequence[str],
    image_predictions: Sequence[str],
    word_concepts: Sequence[str],
    word_vectors: np.ndarray,
    *,
    image_ids: Sequence[int] | None = None,
    layer: str = "layer",
    word_space: str = "words",
    classes: Collection[str] | None = None,
) -> RecoveryResult:
    """Run the 1 vs 2 recovery test of one layer against one word space.

    Args:
        activations: n_images x d pooled activations at the layer, one row per image.
        image_concepts: concept id t of each image.
        image_predictions: the model's final top-1 concept id p of each image; an empty
            string where the model has no prediction for it (counted in n_no_prediction).
        word_concepts: concept ids that have word vectors, one per row of `word_vectors`.
        word_vectors: n_words x d_w word vectors.
        image_ids: ids of the images, carried into the outcomes and error messages.
        layer: name of the layer space, for error messages.
        word_space: name of the word space, for error messages.
        classes: the concepts that are classes of the model (its predictions can be them);
            images of any other concept are not tested (None: every concept is a class).

    Returns:
        RecoveryResult with per-image outcomes.

    Raises:
        InputError: lengths disagree or a concept id repeats among the word concepts.
        DegenerateInputError: NaN/inf or constant activations or word vectors, fewer than 4
            concepts with both images and word vectors; the message names images/concepts.
    """
    x = np.asarray(activations, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"layer {layer!r}: activations have shape {x.shape}, expected n x d")
    n_img = x.shape[0]
    t_all = [str(c) for c in image_concepts]
    p_all = [str(c) for c in image_predictions]
    ids = np.arange(n_img) if image_ids is None else np.asarray(image_ids)
    if len(t_all) != n_img or len(p_all) != n_img or len(ids) != n_img:
        raise InputError(
            f"layer {layer!r}: {n_img} activation rows but {len(t_all)} concepts, "
            f"{len(p_all)} predictions and {len(ids)} image ids; pass one of each per image"
        )
    words = [str(c) for c in word_concepts]
    if len(set(words)) != len(words):
        raise InputError(f"word space {word_space!r}: concept ids repeat; pass each once")
    word_row = {c: i for i, c in enumerate(words)}
    bad_rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad_rows.size:
        raise DegenerateInputError(
            f"layer {layer!r}: activations of images "
            f"{name_concepts([f'{ids[i]} ({t_all[i]})' for i in range(n_img)], bad_rows)} "
            "contain NaN or inf; re-extract them"
        )

    # K: concepts with images and word vectors, in word-space order.
    has_images = set(t_all)
    k_concepts = [c for c in words if c in has_images]
    check_count(
        len(k_concepts),
        f"layer {layer!r} and word space {word_space!r}",
        "concepts with both images and word vectors",
    )
    k_col = {c: i for i, c in enumerate(k_concepts)}
    img_k = np.array([k_col.get(t, -1) for t in t_all])
    in_k = img_k >= 0
    counts = np.bincount(img_k[in_k], minlength=len(k_concepts)).astype(np.float64)
    sums = np.zeros((len(k_concepts), x.shape[1]))
    np.add.at(sums, img_k[in_k], x[in_k])
    means = sums / counts[:, None]
    cz, bad_c = _standardise_rows(means)
    if bad_c.any():
        raise DegenerateInputError(
            f"layer {layer!r}: mean activations of concepts "
            f"{name_concepts(k_concepts, np.flatnonzero(bad_c))} are constant, so their "
            "correlations are undefined; drop these concepts"
        )
    word_sim = similarity_matrix(word_vectors, labels=words, space=word_space)
    k_word = np.array([word_row[c] for c in k_concepts])

    no_prediction = np.array([p == "" for p in p_all], dtype=bool)
    misclassified = np.array(
        [p != "" and t != p for t, p in zip(t_all, p_all, strict=True)], dtype=bool
    )
    with_words = np.array(
        [t in word_row and p in word_row for t, p in zip(t_all, p_all, strict=True)]
    )
    class_set = None if classes is None else {str(c) for c in classes}
    is_class = np.array([class_set is None or t in class_set for t in t_all], dtype=bool)
    single = np.zeros(n_img, dtype=bool)
    single[in_k] = counts[img_k[in_k]] < 2
    tested = np.flatnonzero(misclassified & is_class & with_words & ~single)

    n_t = len(tested)
    success = np.zeros(n_t, dtype=bool)
    score_t = np.full(n_t, np.nan)
    score_p = np.full(n_t, np.nan)
    visual_defined = np.zeros(n_t, dtype=bool)
    visual_success = np.zeros(n_t, dtype=bool)
    rank = np.zeros(n_t, dtype=np.int64)
    labels_of = [f"image {ids[i]} ({t_all[i]})" for i in range(n_img)]
    for start in range(0, n_t, _CHUNK):
        sel = tested[start : start + _CHUNK]
        rows = np.arange(start, start + len(sel))
        ez, bad_e = _standardise_rows(x[sel])
        if bad_e.any():
            raise DegenerateInputError(
                f"layer {layer!r}: activations of "
                f"{name_concepts([labels_of[i] for i in sel], np.flatnonzero(bad_e))} are "
                "constant, so their correlations are undefined; drop these images"
            )
        r = ez @ cz.T
        t_col = img_k[sel]
        # c_t without x: (n_t * c_t - x) / (n_t - 1).
        c_t = (counts[t_col, None] * means[t_col] - x[sel]) / (counts[t_col, None] - 1.0)
        ctz, bad_ct = _standardise_rows(c_t)
        if bad_ct.any():
            raise DegenerateInputError(
                f"layer {layer!r}: the mean of the other images of "
                f"{name_concepts([labels_of[i] for i in sel], np.flatnonzero(bad_ct))} is "
                "constant; drop these images"
            )
        r_t = (ez * ctz).sum(axis=1)
        r[np.arange(len(sel)), t_col] = r_t
        p_col = np.array([k_col.get(p_all[i], -1) for i in sel])
        keep = np.ones_like(r, dtype=bool)
        keep[np.arange(len(sel)), t_col] = False
        has_p = p_col >= 0
        keep[np.flatnonzero(has_p), p_col[has_p]] = False
        w_t = word_sim[np.array([word_row[t_all[i]] for i in sel])][:, k_word]
        w_p = word_sim[np.array([word_row[p_all[i]] for i in sel])][:, k_word]
        s_t = _masked_pearson(r, w_t, keep)
        s_p = _masked_pearson(r, w_p, keep)
        score_t[rows], score_p[rows] = s_t, s_p
        success[rows] = s_t > s_p
        visual_defined[rows] = has_p
        r_p = np.where(has_p, r[np.arange(len(sel)), np.maximum(p_col, 0)], np.nan)
        visual_success[rows] = has_p & (r_t > r_p)
        rank[rows] = 1 + (r > r_t[:, None]).sum(axis=1)

    n_success = int(success.sum())
    n_visual = int(visual_defined.sum())
    n_visual_success = int(visual_success.sum())
    outcomes = RecoveryOutcomes(
        image_index=tested,
        image_id=ids[tested],
        true_concept=[t_all[i] for i in tested],
        predicted_concept=[p_all[i] for i in tested],
        success=success,
        score_true=score_t,
        score_predicted=score_p,
        visual_defined=visual_defined,
        visual_success=visual_success,
        rank_true=rank,
    )
    return RecoveryResult(
        n_images=n_t,
        n_success=n_success,
        success_rate=n_success / n_t if n_t else float("nan"),
        p_value=_binom_p(n_success, n_t),
        n_visual=n_visual,
        visual_success_rate=n_visual_success / n_visual if n_visual else float("nan"),
        visual_p_value=_binom_p(n_visual_success, n_visual),
        mean_rank=float(rank.mean()) if n_t else float("nan"),
        median_rank=float(np.median(rank)) if n_t else float("nan"),
        n_concepts=len(k_concepts),
        n_misclassified=int(misclassified.sum()),
        n_skipped_no_word_vector=int((misclassified & is_class & ~with_words).sum()),
        n_skipped_single_image=int((misclassified & is_class & with_words & single).sum()),
        n_no_prediction=int(no_prediction.sum()),
        outcomes=outcomes,
        n_skipped_not_a_class=int((misclassified & ~is_class).sum()),
    )
