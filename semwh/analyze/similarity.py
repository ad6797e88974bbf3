"""Concept-by-concept similarity matrices of a space.

S[i, k] = Pearson(x_i, x_k) by default (DESIGN "Method definitions"); Spearman and cosine are
options. Degenerate rows are errors that name their concepts, never silent NaNs.
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


def similarity_matrix(
    vectors: np.ndarray,
    *,
    metric: str = "pearson",
    labels: Sequence[str] | None = None,
    space: str = "space",
) -> np.ndarray:
    """Similarity of every pair of concept vectors.

    Args:
        vectors: n x d matrix, one row per concept.
        metric: "pearson" (default), "spearman" (Pearson of within-row ranks, ties averaged)
            or "cosine".
        labels: concept ids of the rows, used in error messages.
        space: name of the space, used in error messages.

    Returns:
        n x n float64 matrix, exactly symmetric, with ones on the diagonal.

    Raises:
        ConfigError: unknown metric.
        InputError: `vectors` is not a 2-D matrix with at least two columns.
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
    if metric == "cosine":
        z = x
        norms = np.linalg.norm(z, axis=1)
        bad = np.flatnonzero(norms <= np.finfo(np.float64).tiny)
        if bad.size:
            raise DegenerateInputError(
                f"space {space!r}: {bad.size} concept(s) have all-zero vectors, so their "
                f"cosine similarity is undefined: {name_concepts(names, bad)}; drop them"
            )
    else:
        z = x - x.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(z, axis=1)
        scale = np.abs(x).max(axis=1)
        bad = np.flatnonzero(norms <= CONSTANT_RTOL * np.sqrt(d) * np.maximum(scale, 1e-300))
        if bad.size:
            raise DegenerateInputError(
                f"space {space!r}: {bad.size} concept(s) have constant or near-constant "
                f"vectors, so their correlations are undefined: {name_concepts(names, bad)}; "
                "drop them or check the extraction"
            )
    z = z / norms[:, None]
    check_distinguishable(z, names, space)
    s = z @ z.T
    # Rounding can leave the product a few ulps from symmetric or outside [-1, 1]; downstream
    # tests compare rows and columns, so make both exact.
    s = (s + s.T) / 2.0
    np.clip(s, -1.0, 1.0, out=s)
    np.fill_diagonal(s, 1.0)
    return s
