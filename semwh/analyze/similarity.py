"""Concept-by-concept similarity matrices of a space.

S[i, k] = Pearson(x_i, x_k) by default (DESIGN "Method definitions"); Spearman and cosine are
options. Degenerate rows are errors that name their concepts, never silent NaNs.

The matrix is computed in tiles of :data:`TILE_ROWS` rows (the last one padded with zero rows
so every product has the same shape), so memory beyond the output is O(n x tile) and the output
can be a file-backed array (a numpy memmap) when it does not fit in memory: each entry has the
same bits whichever array holds it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from semwh.analyze._checks import check_count, check_finite, name_concepts, resolve_labels
from semwh.errors import ConfigError, DegenerateInputError, InputError

SIMILARITY_METRICS = ("pearson", "spearman", "cosine")

#: A row whose spread is below this fraction of its magnitude is treated as constant: its
#: correlations would be dominated by rounding error rather than by the data.
CONSTANT_RTOL = 1e-10


#: Unit-normalised concept vectors all closer than this to their mean make a space whose
#: similarities are all 1 up to rounding (e.g. the logits of a randomly initialised network,
#: which barely depend on the input): its similarity structure is noise, not a number to report.
INDISTINGUISHABLE_ATOL = 1e-6

#: Rows per matrix product. Fixed, and the last tile padded to it: a BLAS product's rounding
#: can depend on its shape, and this keeps every entry independent of n's remainder.
TILE_ROWS = 256


def check_distinguishable(z: np.ndarray, names: Sequence[str], space: str) -> None:
    """Raise when every normalised concept vector is (numerically) the same vector."""
    spread = np.linalg.norm(z - z.mean(axis=0), axis=1)
    if spread.max() < INDISTINGUISHABLE_ATOL:
        raise DegenerateInputError(
            f"space {space!r}: the vectors of all {len(names)} concepts are nearly identical "
            f"after normalisation (largest deviation {spread.max():.1e}), so every similarity "
            f"is 1 up to rounding; concepts: {name_concepts(names, np.arange(len(names)))}. "
            "The layer does not depend on the input (e.g. logits of random weights); leave it out"
        )


def unit_rows(x: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled so that the dot product of two is their similarity (centred first, except
    for cosine), and a mask of the rows where it is undefined: constant rows (their centred
    norm within rounding of zero) or, for cosine, zero rows. Undefined rows are left
    unscaled."""
    z = x if metric == "cosine" else x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(z, axis=1)
    scale = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0])
    bad = norms <= CONSTANT_RTOL * np.sqrt(max(x.shape[1], 1)) * np.maximum(scale, 1e-300)
    return z / np.where(bad, 1.0, norms)[:, None], bad


def similarity_matrix(
    vectors: np.ndarray,
    *,
    metric: str = "pearson",
    labels: Sequence[str] | None = None,
    space: str = "space",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Similarity of every pair of concept vectors.

    Args:
        vectors: n x d matrix, one row per concept.
        metric: "pearson" (default), "spearman" (Pearson of within-row ranks, ties averaged)
            or "cosine".
        labels: concept ids of the rows, used in error messages.
        space: name of the space, used in error messages.
        out: writable n x n float64 array to fill (e.g. a numpy memmap in the warehouse's
            tmp/ when the matrix does not fit in memory); default a new array.

    Returns:
        n x n float64 matrix (``out`` when given), exactly symmetric, ones on the diagonal.

    Raises:
        ConfigError: unknown metric.
        InputError: `vectors` is not a 2-D matrix with at least two columns, or `out` is
            not a writable n x n float64 array.
        DegenerateInputError: fewer than 4 concepts, NaN/inf entries, constant or
            near-constant rows (pearson, spearman) or all-zero rows (cosine); the message
            names the concepts.
    """
    if metric not in SIMILARITY_METRICS:
        raise ConfigError(
            f"unknown similarity metric {metric!r} (choose {', '.join(SIMILARITY_METRICS)})"
        )
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"space {space!r}: vectors have shape {x.shape}, expected n x d")
    n, d = x.shape
    names = resolve_labels(labels, n, space)
    check_count(n, f"space {space!r}")
    if d < 2:
        raise InputError(
            f"space {space!r}: vectors have {d} dimension(s); correlations need at least 2"
        )
    check_finite(x, names, space, "vectors")

    if metric == "spearman":
        x = stats.rankdata(x, axis=1)
    z, undefined = unit_rows(x, metric)
    bad = np.flatnonzero(undefined)
    if bad.size and metric == "cosine":
        raise DegenerateInputError(
            f"space {space!r}: {bad.size} concept(s) have all-zero vectors, so their "
            f"cosine similarity is undefined: {name_concepts(names, bad)}; drop them"
        )
    if bad.size:
        raise DegenerateInputError(
            f"space {space!r}: {bad.size} concept(s) have constant or near-constant "
            f"vectors, so their correlations are undefined: {name_concepts(names, bad)}; "
            "drop them or check the extraction"
        )
    check_distinguishable(z, names, space)
    if out is None:
        out = np.empty((n, n))
    elif out.shape != (n, n) or out.dtype != np.float64 or not out.flags.writeable:
        raise InputError(
            f"space {space!r}: the output array must be a writable {n} x {n} float64 array, "
            f"got {out.dtype} {out.shape}"
        )
    _products(z, out)
    _symmetrise(out)
    return out


def _products(z: np.ndarray, out: np.ndarray) -> None:
    """out = z z^T, tile by tile of TILE_ROWS rows (the last tile padded with zero rows)."""
    n = z.shape[0]
    zt = np.ascontiguousarray(z.T)
    tile = np.zeros((TILE_ROWS, z.shape[1]))
    for i0 in range(0, n, TILE_ROWS):
        i1 = min(i0 + TILE_ROWS, n)
        tile[: i1 - i0] = z[i0:i1]
        tile[i1 - i0 :] = 0.0
        out[i0:i1] = (tile @ zt)[: i1 - i0]


def _symmetrise(s: np.ndarray) -> None:
    """(s + s^T) / 2, clipped to [-1, 1], ones on the diagonal, one pair of tiles at a time.

    Rounding can leave the product a few ulps from symmetric or outside [-1, 1]; downstream
    tests compare rows and columns, so make both exact. Entry by entry this is the whole-matrix
    ``(s + s.T) / 2`` (addition is commutative), in O(tile^2) memory.
    """
    n = s.shape[0]
    starts = range(0, n, TILE_ROWS)
    for i0 in starts:
        i1 = min(i0 + TILE_ROWS, n)
        for j0 in starts:
            if j0 < i0:
                continue
            j1 = min(j0 + TILE_ROWS, n)
            upper = (s[i0:i1, j0:j1] + s[j0:j1, i0:i1].T) / 2.0
            np.clip(upper, -1.0, 1.0, out=upper)
            if i0 == j0:
                np.fill_diagonal(upper, 1.0)
            s[i0:i1, j0:j1] = upper
            s[j0:j1, i0:i1] = upper.T
