"""How each image of a space sits among the concept centroids: per-image scores.

For n images with concept labels, the centroid of concept k is the mean of its images'
vectors; for image x of concept t, its own image is left out of t's centroid
(c_t = mean of t's other images), so an image whose concept has no other image cannot be
scored and is skipped (counted, never given a number). With s_k = similarity(x, c_k)
(Pearson correlation of the two vectors by default, or cosine):

* ``own_similarity`` = s_t;
* ``margin`` = s_t - max_{k != t} s_k;
* ``rank`` = 1 + #{k != t : s_k >= s_t - tie_tol}: 1 is the most similar. A tie counts
  against the image: a concept within ``tie_tol`` of its own comes before it;
* ``correct`` = rank == 1, that is margin > tie_tol;
* ``nearest`` = t when correct, else the most similar other concept (the first in concept
  order among equal ones).

Ties are rare with real vectors, but the leave-one-out centroid and the other centroids are
computed along different paths, so two centroids that are the same up to rounding could
otherwise decide an image's outcome by the last bit; the tolerance makes such a tie count the
same way on every BLAS.

Images are scored in blocks of rows, so that memory beyond the inputs stays about
O(block x (concepts + dim)) for any number of images: no image-by-image matrix is formed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from semwh.analyze._checks import CHECK_BLOCK_ENTRIES, name_concepts, row_blocks
from semwh.analyze.similarity import unit_rows
from semwh.errors import ConfigError, DegenerateInputError, InputError

#: Similarities an image can have to a centroid.
EXEMPLAR_SIMILARITIES = ("pearson", "cosine")

#: A concept whose similarity is within this of the image's own concept's counts as tied
#: (and a tie counts against the image).
TIE_TOL = 1e-10

#: Fewest concepts (centroids) the scores need: with one, nearest is always right.
MIN_CENTROIDS = 2


@dataclass(frozen=True)
class ExemplarScores:
    """Per-image scores of :func:`exemplar_scores`, one entry per scored image.

    Attributes:
        concepts: The concepts whose centroids were compared, sorted (every concept of the
            input, those with a single image included).
        index: Row of each scored image in the input, ascending.
        concept: Its own concept, as an index into ``concepts``.
        n_images: The number of images of its own concept, itself included (>= 2).
        nearest: The nearest concept, as an index into ``concepts``.
        correct: Whether the nearest concept is its own (rank 1).
        margin: Similarity to its own (leave-one-out) centroid minus the best similarity to
            another concept's centroid.
        rank: Its own concept's rank among all centroids (1 = most similar; ties against it).
        own_similarity: Similarity to its own (leave-one-out) centroid.
        skipped: Rows not scored: the only image of their concept.
        similarity: ``pearson`` or ``cosine``.
        tie_tol: The tolerance ties were decided with.
    """

    concepts: tuple[str, ...]
    index: np.ndarray
    concept: np.ndarray
    n_images: np.ndarray
    nearest: np.ndarray
    correct: np.ndarray
    margin: np.ndarray
    rank: np.ndarray
    own_similarity: np.ndarray
    skipped: np.ndarray
    similarity: str = "pearson"
    tie_tol: float = TIE_TOL

    @property
    def n_scored(self) -> int:
        return int(self.index.size)

    @property
    def n_skipped(self) -> int:
        return int(self.skipped.size)

    @property
    def accuracy(self) -> float:
        """Share of scored images whose nearest centroid is their own (NaN when none)."""
        return float(self.correct.mean()) if self.index.size else float("nan")


def _check_similarity(similarity: str) -> None:
    if similarity not in EXEMPLAR_SIMILARITIES:
        raise ConfigError(
            f"unknown similarity {similarity!r} for image scores "
            f"(choose {', '.join(EXEMPLAR_SIMILARITIES)})"
        )


def exemplar_scores(
    vectors: np.ndarray,
    concepts: Sequence[str],
    *,
    similarity: str = "pearson",
    labels: Sequence[str] | None = None,
    space: str = "space",
    tie_tol: float = TIE_TOL,
    block_entries: int = CHECK_BLOCK_ENTRIES,
    progress: Callable[[int, int], None] | None = None,
) -> ExemplarScores:
    """Score every image against the concept centroids, its own left out of its own.

    Args:
        vectors: n x d matrix, one row per image.
        concepts: The concept of each image.
        similarity: ``pearson`` (default) or ``cosine``.
        labels: Image ids (stimuli) of the rows, for error messages (default: row numbers).
        space: Name of the space, for error messages.
        tie_tol: Another concept within this of the image's own counts as tied, and a tie
            counts against the image.
        block_entries: About how many entries each block of images may hold (memory).
        progress: Called with (images scored, images to score) after each block.

    Returns:
        The scores of every image whose concept has another image; the rest are counted in
        ``skipped``.

    Raises:
        ConfigError: An unknown similarity.
        InputError: ``vectors`` is not n x d, or the concepts or labels are not one per row.
        DegenerateInputError: Fewer than two concepts; NaN or inf entries; a constant (for
            Pearson) or zero (for cosine) image, centroid or leave-one-out centroid. The
            message names the images or concepts.
    """
    _check_similarity(similarity)
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"space {space!r}: image vectors have shape {x.shape}, expected n x d")
    n, d = x.shape
    own = [str(c) for c in concepts]
    names = [f"row {i}" for i in range(n)] if labels is None else [str(s) for s in labels]
    if len(own) != n or len(names) != n:
        raise InputError(
            f"space {space!r}: {n} image rows but {len(own)} concepts and {len(names)} labels; "
            "pass one of each per row"
        )
    keys, inv = np.unique(np.asarray(own, dtype=object), return_inverse=True)
    keys_list = tuple(str(k) for k in keys)
    inv = inv.astype(np.int64).reshape(-1)
    n_c = len(keys_list)
    if n_c < MIN_CENTROIDS:
        raise DegenerateInputError(
            f"space {space!r}: the images belong to {n_c} concept(s) "
            f"({', '.join(keys_list) or 'none'}); scoring an image against the concept "
            f"centroids needs at least {MIN_CENTROIDS} concepts"
        )
    finite = np.ones(n, dtype=bool)
    for i0, i1 in row_blocks(n, d, block_entries):
        finite[i0:i1] = np.isfinite(x[i0:i1]).all(axis=1)
    if not finite.all():
        raise DegenerateInputError(
            f"space {space!r}: the vectors of images "
            f"{name_concepts(names, np.flatnonzero(~finite))} contain NaN or inf; re-extract "
            "them or leave them out"
        )

    counts = np.bincount(inv, minlength=n_c)
    indicator = sp.csr_matrix((np.ones(n), (inv, np.arange(n))), shape=(n_c, n))
    sums = np.asarray(indicator @ x)
    cz, bad_c = unit_rows(sums / counts[:, None], similarity)
    if bad_c.any():
        raise DegenerateInputError(
            f"space {space!r}: the centroids of concepts "
            f"{name_concepts(keys_list, np.flatnonzero(bad_c))} are "
            f"{_undefined(similarity)}, so their {similarity} similarity is undefined; leave "
            "these concepts out"
        )

    scored = np.flatnonzero(counts[inv] >= 2)
    skipped = np.flatnonzero(counts[inv] < 2)
    m = scored.size
    nearest = np.zeros(m, dtype=np.int64)
    rank = np.zeros(m, dtype=np.int64)
    margin = np.zeros(m)
    own_sim = np.zeros(m)
    for b0, b1 in row_blocks(m, max(n_c, d), block_entries):
        sel = scored[b0:b1]
        t = inv[sel]
        xb = x[sel]
        ez, bad_e = unit_rows(xb, similarity)
        if bad_e.any():
            raise DegenerateInputError(
                f"space {space!r}: the vectors of images "
                f"{name_concepts([names[i] for i in sel], np.flatnonzero(bad_e))} are "
                f"{_undefined(similarity)}, so their {similarity} similarity is undefined; "
                "leave these images out"
            )
        # Leave-one-out centroid of the image's own concept: (sum - x) / (count - 1).
        loo = (sums[t] - xb) / (counts[t] - 1.0)[:, None]
        lz, bad_l = unit_rows(loo, similarity)
        if bad_l.any():
            raise DegenerateInputError(
                f"space {space!r}: the mean of the other images of the concept of images "
                f"{name_concepts([names[i] for i in sel], np.flatnonzero(bad_l))} is "
                f"{_undefined(similarity)}; leave these images out"
            )
        s = ez @ cz.T
        rows = np.arange(sel.size)
        s_own = np.einsum("ij,ij->i", ez, lz)
        s[rows, t] = -np.inf
        best = np.argmax(s, axis=1)
        margin[b0:b1] = s_own - s[rows, best]
        rank[b0:b1] = 1 + (s >= (s_own - tie_tol)[:, None]).sum(axis=1)
        nearest[b0:b1] = np.where(rank[b0:b1] == 1, t, best)
        own_sim[b0:b1] = s_own
        if progress is not None:
            progress(int(b1), int(m))
    return ExemplarScores(
        concepts=keys_list,
        index=scored.astype(np.int64),
        concept=inv[scored],
        n_images=counts[inv[scored]].astype(np.int64),
        nearest=nearest,
        correct=rank == 1,
        margin=margin,
        rank=rank,
        own_similarity=own_sim,
        skipped=skipped.astype(np.int64),
        similarity=similarity,
        tie_tol=float(tie_tol),
    )


def _undefined(similarity: str) -> str:
    return "constant" if similarity == "pearson" else "zero"
