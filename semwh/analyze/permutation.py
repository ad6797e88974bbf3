"""Shared pieces of the permutation (Mantel) tests: seeds, permutations, p-values.

A test's permutations form one stream per seed: permutation k is the k-th
``rng.permutation(n)`` call on the seed's Generator. A *block* of permutations
``start..stop-1`` of that stream (:func:`permutation_stream`) lets the null of one test be
computed in pieces, on several machines, and concatenated into the very null a single call
computes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from semwh.analyze.design import draw_permutation
from semwh.errors import ConfigError
from semwh.validate import check_count

#: Null statistics within this distance of the observed one count as ">=": the same value
#: summed in another order can differ in the last bits.
STAT_TOL = 1e-12


def make_rng(seed: int | np.random.Generator) -> tuple[np.random.Generator, int | None]:
    """Return a Generator and the seed to record (None when a Generator was passed in)."""
    if isinstance(seed, np.random.Generator):
        return seed, None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed)), int(seed)


def check_n_permutations(n_permutations: int) -> int:
    """Validate a permutation count (0 means no test)."""
    return check_count(n_permutations, "n_permutations")


def check_block(start: int, stop: int | None, n_permutations: int) -> tuple[int, int]:
    """Validate a block ``start..stop-1`` of N permutations; ``stop`` None means N.

    Raises:
        ConfigError: Bounds that are not integers, reversed, or past the end of the N
            permutations.
    """
    n_permutations = check_n_permutations(n_permutations)
    stop = n_permutations if stop is None else stop
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or int(value) != value:
            raise ConfigError(f"permutation block {name} must be an integer, got {value!r}")
    start, stop = int(start), int(stop)
    if not 0 <= start <= stop <= n_permutations:
        raise ConfigError(
            f"permutation block {start}..{stop} is outside the {n_permutations} permutations "
            f"of the test (start and stop must satisfy 0 <= start <= stop <= {n_permutations})"
        )
    return start, stop


def permutation_blocks(n_permutations: int, block_size: int) -> list[tuple[int, int]]:
    """Split N permutations into consecutive ``(start, stop)`` blocks of ``block_size``.

    Raises:
        ConfigError: A block size below 1.
    """
    n_permutations = check_n_permutations(n_permutations)
    if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 1:
        raise ConfigError(f"permutation block size must be an integer >= 1, got {block_size!r}")
    size = int(block_size)
    return [(i, min(i + size, n_permutations)) for i in range(0, n_permutations, size)]


def permutation_stream(
    rng: np.random.Generator, n: int, start: int, stop: int, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield (b, n) arrays of permutations ``start..stop-1`` of the stream of ``rng``.

    Each permutation is drawn with its own ``rng.permutation(n)`` call (or, at the image
    level, the calls of the comparison's design, :mod:`semwh.analyze.design`), so the sequence of
    permutations depends on the seed only, never on the batch size or the block. The first
    ``start`` permutations are drawn and dropped: a draw costs O(n), next to the O(n^2) or
    more of each permuted statistic (about 12 us per permutation of 1000 concepts).
    The bounds are checked by the caller (:func:`check_block`).
    """
    for _ in range(start):
        draw_permutation(rng, n)
    batch_size = max(1, int(batch_size))
    done = start
    while done < stop:
        b = min(batch_size, stop - done)
        yield np.stack([draw_permutation(rng, n) for _ in range(b)])
        done += b


def permutation_batches(
    rng: np.random.Generator, n: int, n_permutations: int, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield (b, n) arrays of permutations of range(n), N rows in all.

    The whole stream from its start: :func:`permutation_stream` from 0 to N.
    """
    return permutation_stream(rng, n, 0, n_permutations, batch_size)


def null_from(
    statistic: Callable[[np.ndarray], float],
    rng: np.random.Generator,
    n: int,
    start: int,
    stop: int,
    batch_size: int,
) -> np.ndarray:
    """The null of a test that recomputes its statistic for each relabelling.

    ``statistic(perm)`` is the statistic with the concepts of one side relabelled by
    ``perm``; it runs for permutations ``start..stop-1`` of the stream of ``rng``
    (:func:`permutation_stream`, drawn ``batch_size`` at a time), so blocks concatenate to
    the null of the whole test. Returns float64 statistics in stream order.
    """
    values = [
        statistic(perm)
        for batch in permutation_stream(rng, n, start, stop, batch_size)
        for perm in batch
    ]
    return np.asarray(values, dtype=np.float64)


def permutation_p_value(stat: float, null: np.ndarray, tol: float = STAT_TOL) -> float:
    """p = (1 + #{null >= stat}) / (1 + N), with `tol` absorbing rounding."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= stat - tol)) / (1 + null.size))
