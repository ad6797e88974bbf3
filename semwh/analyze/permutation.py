"""Shared pieces of the permutation (Mantel) tests: seeds, permutations, p-values."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from semwh.errors import ConfigError

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
    if isinstance(n_permutations, bool) or int(n_permutations) != n_permutations:
        raise ConfigError(f"n_permutations must be an integer, got {n_permutations!r}")
    if n_permutations < 0:
        raise ConfigError(f"n_permutations must be >= 0, got {n_permutations}")
    return int(n_permutations)


def permutation_batches(
    rng: np.random.Generator, n: int, n_permutations: int, batch_size: int
) -> Iterator[np.ndarray]:
    """Yield (b, n) arrays of permutations of range(n), N rows in all.

    Each permutation is drawn with its own ``rng.permutation(n)`` call, so the sequence of
    permutations depends on the seed only, never on the batch size.
    """
    batch_size = max(1, int(batch_size))
    done = 0
    while done < n_permutations:
        b = min(batch_size, n_permutations - done)
        yield np.stack([rng.permutation(n) for _ in range(b)])
        done += b


def permutation_p_value(stat: float, null: np.ndarray, tol: float = STAT_TOL) -> float:
    """p = (1 + #{null >= stat}) / (1 + N), with `tol` absorbing rounding."""
    null = np.asarray(null, dtype=np.float64)
    return float((1 + np.count_nonzero(null >= stat - tol)) / (1 + null.size))
