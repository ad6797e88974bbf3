"""Mutual k-nearest-neighbour alignment of two spaces (Huh et al., 2024).

For each concept i, N_A(i) is the set of its k nearest neighbours among the other concepts
in space A, by cosine similarity of the concept vectors (each vector normalised to unit
length, as Huh et al. do); likewise N_B(i). The alignment is

    m_kNN = (1 / n) sum_i |N_A(i) ∩ N_B(i)| / k,

between 0 and 1; two unrelated spaces score about k / (n - 1).

Tie rule: neighbours are ranked by their cosine similarity rounded to the nearest multiple
of 2^-32 (:data:`SIMILARITY_STEP`, about 2.3e-10; halves to even), then by concept index,
the concept that comes first in the given order winning. Floating point splits exact ties
(duplicated or parallel vectors) by a few units in the last place, differently on each BLAS
build; rounding first makes them, and near-exact ties closer than the step, equal
everywhere, so the index decides them on every platform. (A similarity whose exact value
lies within rounding error, about 1e-15, of a midpoint between two multiples could still
round either way; dyadic values such as 0, 1/2 or 1 are multiples, never midpoints.)

The permutation test relabels the concepts of B: concept i gets the vector of concept
perm[i]. Each null value is the alignment of A with the relabelled B under the same rule,
ties in B decided by the new concept order, and costs O(n k) (plus the size of the tied
groups at the k-th place).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from semwh.analyze._checks import name_concepts
from semwh.analyze._matrices import as_matrix_pair
from semwh.analyze.permutation import (
    check_block,
    check_n_permutations,
    make_rng,
    null_from,
    permutation_p_value,
)
from semwh.errors import ConfigError, DegenerateInputError

DEFAULT_K = 10
# The tie rule's rounding step of cosine similarities (module docstring).
SIMILARITY_STEP = 2.0**-32


@dataclass(frozen=True)
class KNNResult:
    """Outcome of :func:`mutual_knn`.

    Attributes:
        alignment: the mutual k-NN alignment (mean fraction of shared neighbours).
        p_value: permutation p-value, (1 + #{null >= alignment}) / (1 + N); None when N = 0.
        null: the N permuted statistics, in the order the permutations were drawn.
        n_concepts: number of concepts n.
        n_permutations: N.
        seed: seed of the permutations (None when a Generator was passed in).
        k: neighbours per concept.
    """

    alignment: float
    p_value: float | None
    null: np.ndarray = field(repr=False)
    n_concepts: int
    n_permutations: int
    seed: int | None
    k: int


def cosine_similarity(x: np.ndarray, labels: Sequence[str], space: str) -> np.ndarray:
    """n x n cosine similarities of the rows of x (float64, one matrix product).

    Raises:
        DegenerateInputError: an all-zero vector (its cosine similarity is undefined).
    """
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(norms <= np.finfo(np.float64).tiny)
    if bad.size:
        raise DegenerateInputError(
            f"space {space!r}: {bad.size} concept(s) have all-zero vectors, so their nearest "
            f"neighbours are undefined: {name_concepts(labels, bad)}; drop them"
        )
    z = x / norms[:, None]
    return z @ z.T


def similarity_keys(sim: np.ndarray) -> np.ndarray:
    """The ranking keys of the tie rule, in place of ``sim``: each similarity as its whole
    number of :data:`SIMILARITY_STEP` steps (round half to even; exact in float64), the
    diagonal -inf so that a concept is never its own neighbour."""
    keys = np.asarray(sim, dtype=np.float64)
    keys *= 1.0 / SIMILARITY_STEP  # a power of two: exact
    np.rint(keys, out=keys)
    np.fill_diagonal(keys, -np.inf)
    return keys


def neighbours(x: np.ndarray, k: int, labels: Sequence[str], space: str) -> np.ndarray:
    """n x k indices of each concept's k nearest other concepts under the tie rule.

    Raises:
        DegenerateInputError: an all-zero vector (its cosine similarity is undefined), or
            every pair of concepts equally similar (identical or parallel vectors), so no
            concept is nearer than another.
    """
    return _ranked(similarity_keys(cosine_similarity(x, labels, space)), k, labels, space)


def _ranked(keys: np.ndarray, k: int, labels: Sequence[str], space: str) -> np.ndarray:
    n = len(keys)
    off = keys[~np.eye(n, dtype=bool)]
    if off.size and off.min() == off.max():
        raise DegenerateInputError(
            f"space {space!r}: every pair of concept vectors has the same cosine similarity "
            f"({off[0] * SIMILARITY_STEP:.3g}; identical or parallel vectors), so nearest "
            f"neighbours are undefined; concepts: {name_concepts(labels, np.arange(n))}"
        )
    # A stable sort of the negated keys keeps equal keys in concept order.
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


class _Neighbours:
    """A's neighbour sets and B's neighbour lists, with the groups of B's concepts that tie
    at the k-th place: a relabelling of B decides those by the new concept order."""

    def __init__(self, x, y, k, labels, space_a, space_b) -> None:
        a, b, names = as_matrix_pair(x, y, labels, space_a, space_b)
        n = a.shape[0]
        if isinstance(k, bool) or int(k) != k or not 1 <= int(k) <= n - 1:
            raise ConfigError(
                f"--k {k!r}: spaces {space_a!r} and {space_b!r} share {n} concepts, so k must "
                f"be an integer from 1 to {n - 1} (the other concepts)"
            )
        self.n, self.k = n, int(k)
        self.member_a = np.zeros((n, n), dtype=bool)
        np.put_along_axis(self.member_a, neighbours(a, self.k, names, space_a), True, axis=1)
        keys_b = similarity_keys(cosine_similarity(b, names, space_b))
        self.nb_b = _ranked(keys_b, self.k, names, space_b)
        last = np.take_along_axis(keys_b, self.nb_b[:, -1:], axis=1)
        above = np.count_nonzero(keys_b > last, axis=1)
        at = np.count_nonzero(keys_b == last, axis=1)
        # (concept, first tied slot, the tied concepts) where more tie than slots remain.
        self.ties = [
            (int(i), int(above[i]), np.flatnonzero(keys_b[i] == last[i, 0]))
            for i in np.flatnonzero(at > self.k - above)
        ]
        self.rows = np.arange(n)[:, None]

    def statistic(self, perm: np.ndarray | None = None) -> float:
        if perm is None:
            shared = self.member_a[self.rows, self.nb_b]
        else:
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(self.n)
            cols = inverse[self.nb_b[perm]]
            for i, first, tied in self.ties:
                cols[inverse[i], first:] = np.sort(inverse[tied])[: self.k - first]
            shared = self.member_a[self.rows, cols]
        return float(np.count_nonzero(shared)) / (self.n * self.k)


def mutual_knn(
    x: np.ndarray,
    y: np.ndarray,
    *,
    k: int = DEFAULT_K,
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
) -> KNNResult:
    """Mutual k-NN alignment of two spaces over the same concepts, with a permutation test.

    Args:
        x: n x d_a vectors of space A, one row per concept.
        y: n x d_b vectors of space B, same concepts in the same order.
        k: neighbours per concept (1 to n - 1; default 10).
        n_permutations: number N of relabellings of B's concepts; 0 skips the test.
        seed: integer seed (recorded) or a numpy Generator (recorded as None).
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.

    Raises:
        ConfigError: a k out of range or bad permutation settings.
        InputError: matrices that are not n x d over the same number of concepts.
        DegenerateInputError: fewer than 4 concepts, NaN/inf or all-zero vectors.
    """
    n_permutations = check_n_permutations(n_permutations)
    nb = _Neighbours(x, y, k, labels, space_a, space_b)
    rng, recorded = make_rng(seed)
    stat = nb.statistic()
    null = null_from(nb.statistic, rng, nb.n, 0, n_permutations, 64)
    return KNNResult(
        alignment=stat,
        p_value=permutation_p_value(stat, null) if n_permutations else None,
        null=null,
        n_concepts=nb.n,
        n_permutations=n_permutations,
        seed=recorded,
        k=nb.k,
    )


def knn_null(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int,
    start: int = 0,
    stop: int | None = None,
    k: int = DEFAULT_K,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
) -> np.ndarray:
    """Null statistics of permutations ``start..stop-1`` of :func:`mutual_knn`'s test."""
    start, stop = check_block(start, stop, n_permutations)
    nb = _Neighbours(x, y, k, labels, space_a, space_b)
    rng, _ = make_rng(seed)
    return null_from(nb.statistic, rng, nb.n, start, stop, 64)
