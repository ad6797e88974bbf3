"""Checks of concept x feature matrices shared by the vector-based measures (CKA, k-NN,
regression 2 vs 2): both over the same concepts, finite, at least four concepts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semwh.analyze._checks import check_count, check_finite, resolve_labels
from semwh.errors import InputError


def as_matrix_pair(
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str] | None,
    space_a: str,
    space_b: str,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both matrices as float64, checked to be n x d_a and n x d_b with finite entries.

    Raises:
        InputError: Not 2-D, or a different number of rows.
        DegenerateInputError: Fewer than 4 concepts or NaN/inf entries (naming the concepts).
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    for m, name in ((a, space_a), (b, space_b)):
        if m.ndim != 2 or m.shape[1] < 1:
            raise InputError(f"space {name!r}: vectors have shape {m.shape}, expected n x d")
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"spaces {space_a!r} and {space_b!r} have {a.shape[0]} and {b.shape[0]} rows; "
            "both must hold the same concepts in the same order"
        )
    n = a.shape[0]
    names = resolve_labels(labels, n, space_a)
    check_count(n, f"spaces {space_a!r} and {space_b!r}")
    check_finite(a, names, space_a, "vectors")
    check_finite(b, names, space_b, "vectors")
    return a, b, names
