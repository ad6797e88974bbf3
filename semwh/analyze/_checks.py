"""Input checks shared by the analyses: degenerate inputs are errors that name concepts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semwh.errors import DegenerateInputError, InputError

#: Fewest shared concepts any analysis accepts (2 vs 2 needs n - 2 >= 2 entries per row).
MIN_CONCEPTS = 4

#: How many offending concepts an error message lists before it says "and N more".
_MAX_NAMED = 10

#: Entries per block of the row-wise checks: memory beyond the inputs stays O(n x block).
CHECK_BLOCK_ENTRIES = 1 << 22


def row_blocks(n: int, n_cols: int, entries: int = CHECK_BLOCK_ENTRIES) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges of about ``entries`` entries each (at least 1 row)."""
    rows = max(1, entries // max(n_cols, 1))
    return [(i0, min(i0 + rows, n)) for i0 in range(0, n, rows)]


def name_concepts(labels: Sequence[str], indices: np.ndarray | Sequence[int]) -> str:
    """Format the labels at `indices` for an error message, eliding long lists."""
    idx = [int(i) for i in indices]
    shown = ", ".join(str(labels[i]) for i in idx[:_MAX_NAMED])
    if len(idx) > _MAX_NAMED:
        shown += f" and {len(idx) - _MAX_NAMED} more"
    return shown


def resolve_labels(labels: Sequence[str] | None, n: int, space: str) -> list[str]:
    """Return concept labels for messages, defaulting to row numbers."""
    if labels is None:
        return [f"row {i}" for i in range(n)]
    labels = [str(label) for label in labels]
    if len(labels) != n:
        raise InputError(
            f"space {space!r}: {len(labels)} concept labels for {n} rows; pass one label per row"
        )
    return labels


def check_finite(x: np.ndarray, labels: Sequence[str], space: str, what: str) -> None:
    """Raise DegenerateInputError naming the rows of `x` that hold NaN or inf."""
    parts = [
        i0 + np.flatnonzero(~np.isfinite(x[i0:i1]).all(axis=1))
        for i0, i1 in row_blocks(x.shape[0], x.shape[1] if x.ndim > 1 else 1)
    ]
    bad = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    if bad.size:
        raise DegenerateInputError(
            f"space {space!r}: {what} of {bad.size} concept(s) contain NaN or inf: "
            f"{name_concepts(labels, bad)}; drop these concepts or fix their vectors"
        )


def check_count(n: int, where: str, what: str = "concepts") -> None:
    """Raise DegenerateInputError when fewer than MIN_CONCEPTS concepts are given.

    Args:
        n: number of concepts.
        where: what the message is about, e.g. "space 'glove'".
        what: how to call the counted things in the message.
    """
    if n < MIN_CONCEPTS:
        raise DegenerateInputError(
            f"{where}: {n} {what}, at least {MIN_CONCEPTS} are needed; "
            "compare spaces that share more concepts"
        )


def as_similarity_pair(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    labels: Sequence[str] | None,
    space_a: str,
    space_b: str,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate two similarity matrices over the same concepts and return them as float64.

    Raises:
        InputError: a matrix is not square or the shapes differ.
        DegenerateInputError: fewer than 4 concepts, or NaN/inf entries (names the concepts).
    """
    a = np.asarray(sim_a, dtype=np.float64)
    b = np.asarray(sim_b, dtype=np.float64)
    for m, space in ((a, space_a), (b, space_b)):
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InputError(
                f"space {space!r}: similarity matrix has shape {m.shape}, expected n x n; "
                "build it with semwh.analyze.similarity_matrix"
            )
    if a.shape != b.shape:
        raise InputError(
            f"similarity matrices of {space_a!r} {a.shape} and {space_b!r} {b.shape} differ in "
            "size; restrict both spaces to their shared concepts in the same order"
        )
    n = a.shape[0]
    names = resolve_labels(labels, n, space_a)
    check_count(n, f"spaces {space_a!r} and {space_b!r}", "shared concepts")
    check_finite(a, names, space_a, "similarities")
    check_finite(b, names, space_b, "similarities")
    return a, b, names
