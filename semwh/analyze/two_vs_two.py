"""The 2 vs 2 test between two similarity matrices (DESIGN "Method definitions").

Definition. For every pair i < j of the n concepts, a_i is row i of S_A with entries i and j
removed (length n - 2), likewise a_j, b_i, b_j from S_A and S_B. With d(u, v) = 1 -
Pearson(u, v) (option: cosine distance) the pair is correct iff

    d(a_i, b_i) + d(a_j, b_j) < d(a_i, b_j) + d(a_j, b_i)

(strict; a tie is not correct). Accuracy is the mean over all n(n-1)/2 pairs; chance is 0.5.
The permutation test relabels the concepts of B (rows and columns of S_B together) N times
with a recorded seed; p = (1 + #{null >= accuracy}) / (1 + N).

Ties: the two sides of the inequality come from different formulas in the fast paths and in
a direct computation, so values that are equal in exact arithmetic (duplicated rows, for
example) can differ in the last bits either way. A pair counts as correct only when the
right side exceeds the left by more than `tie_tol` (default 1e-10, far above float64
rounding of these O(n) sums and far below any meaningful difference of distances); within it
the pair is a tie, which is not correct, as DESIGN requires. Any implementation applying the
same rule in float64 makes the same decisions.

Undefined pairs: a pair (i, j) whose kept entries of row i or row j are constant (Pearson
distance) or all zero (cosine distance), in either matrix, has an undefined distance. That is
a DegenerateInputError naming the concept pairs and the space, never a silently incorrect
pair. Relabelling B permutes its rows and their entries together, so a pair is undefined in
a permuted B exactly when the corresponding pair is in B: the check runs once.

How it is computed (each module says why its numbers are the definition's):

* :mod:`semwh.analyze.two_vs_two_margins`: every pair's margin from whole-row sums and one
  matrix product, a block of rows at a time, streaming both matrices (numpy memmaps
  included) so that memory beyond the inputs is O(n x block); the observed statistic.
* :mod:`semwh.analyze.two_vs_two_fast_null`: the permutation null, with everything that
  depends on A alone computed once and each relabelling of B one fused pass per block.

The slow reference, pair by pair as worded above, is ``tests/unit/analyze/reference.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semwh.analyze._checks import (
    CHECK_BLOCK_ENTRIES,
    as_similarity_pair,
    resolve_labels,
    row_blocks,
)
from semwh.analyze.permutation import (
    check_block,
    check_n_permutations,
    make_rng,
    permutation_p_value,
)
from semwh.analyze.similarity import CONSTANT_RTOL
from semwh.analyze.two_vs_two_fast_null import null_counts
from semwh.analyze.two_vs_two_margins import (
    CPU_BLOCK_BYTES,
    CUDA_BLOCK_BYTES,
    BlockMargins,
    block_bytes,
)
from semwh.errors import ConfigError, DegenerateInputError

__all__ = [
    "BACKENDS",
    "CPU_BLOCK_BYTES",
    "CUDA_BLOCK_BYTES",
    "DISTANCES",
    "TIE_TOL",
    "TwoVsTwoResult",
    "block_bytes",
    "check_pairs_defined",
    "two_vs_two",
    "two_vs_two_null",
    "two_vs_two_p_value",
    "undefined_pairs",
]

DISTANCES = ("pearson", "cosine")
BACKENDS = ("numpy", "torch")

#: Default tie tolerance on the difference of the two sums of distances (see module doc).
TIE_TOL = 1e-10


@dataclass(frozen=True)
class TwoVsTwoResult:
    """Outcome of :func:`two_vs_two`.

    Attributes:
        accuracy: fraction of the n(n-1)/2 concept pairs that are correct.
        n_correct: number of correct pairs.
        n_pairs: n(n-1)/2.
        n_concepts: n.
        p_value: permutation p-value (1 + #{null >= accuracy}) / (1 + N); None when N = 0.
        null: the N permuted accuracies, in the order the permutations were drawn.
        n_permutations: N.
        seed: seed of the permutations (None when a Generator was passed in).
        distance: "pearson" (d = 1 - r) or "cosine".
        tie_tol: tie tolerance used.
        pair_correct: n x n bool matrix, True at [i, j] (i < j) for correct pairs; only when
            asked for (``return_pairs=True``), else None.
        pair_margin: n x n float matrix, [i, j] (i < j) = (d(a_i,b_j) + d(a_j,b_i)) -
            (d(a_i,b_i) + d(a_j,b_j)), NaN elsewhere; large margins are the pairs that drive
            the result. Only with ``return_pairs=True``.
    """

    accuracy: float
    n_correct: int
    n_pairs: int
    n_concepts: int
    p_value: float | None
    null: np.ndarray = field(repr=False)
    n_permutations: int
    seed: int | None
    distance: str
    tie_tol: float
    pair_correct: np.ndarray | None = field(default=None, repr=False)
    pair_margin: np.ndarray | None = field(default=None, repr=False)


def two_vs_two(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    distance: str = "pearson",
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    tie_tol: float = TIE_TOL,
    return_pairs: bool = False,
    backend: str = "numpy",
    device: str = "cpu",
    max_block_bytes: int | None = None,
    n_jobs: int | None = None,
) -> TwoVsTwoResult:
    """2 vs 2 accuracy of two similarity matrices over the same concepts, with a null.

    Args:
        sim_a: n x n similarity matrix of space A.
        sim_b: n x n similarity matrix of space B, same concepts in the same order.
        distance: "pearson" (d = 1 - r, default) or "cosine" (d = 1 - cosine).
        n_permutations: number N of relabellings of B (rows and columns together) for the
            p-value; 0 skips the test.
        seed: integer seed (recorded) or a numpy Generator (recorded as None).
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.
        tie_tol: a pair is correct only when the right side exceeds the left by more than
            this (see module docstring); 0 gives the bare strict comparison.
        return_pairs: also return the per-pair correctness and margins (n x n matrices).
        backend: "numpy" (default) or "torch" (same results in float64).
        device: "cpu", or "cuda"/"cuda:N" with the torch backend.
        max_block_bytes: memory bound for the per-block work arrays (default 512 MiB on the
            CPU, 8 GiB on a CUDA device: fewer, larger kernels).
        n_jobs: threads running permutations at once with the numpy backend (default:
            number of CPUs, at most 8); results do not depend on it.

    Returns:
        TwoVsTwoResult.

    Raises:
        ConfigError: unknown distance/backend, unavailable device, bad permutation settings.
        InputError: matrices of different or non-square shape.
        DegenerateInputError: fewer than 4 concepts, NaN/inf entries (names the concepts), or
            concept pairs whose distance is undefined (names the pairs).
    """
    _check_options(distance, backend, tie_tol)
    max_block_bytes = block_bytes(device, max_block_bytes)
    n_permutations = check_n_permutations(n_permutations)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    entries = _block_entries(max_block_bytes)
    if backend == "numpy":
        check_pairs_defined(a, b, distance, labels, space_a, space_b, entries)
    rng, recorded_seed = make_rng(seed)
    n = a.shape[0]
    n_pairs = n * (n - 1) // 2
    permuting = n_permutations > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # The observed statistic streams A and B (memory beyond them O(n x block)), with or
        # without a null, so it never depends on the number of permutations.
        observed = BlockMargins(a, distance, backend, device, stream=True, block_entries=entries)
        observed.set_b(b)
        if backend == "torch":
            # On the device that holds the matrices: no second pass over them on the host.
            check_pairs_defined(observed.a, observed.b, distance, labels, space_a, space_b, entries)
        pair_correct: np.ndarray | None = None
        pair_margin: np.ndarray | None = None
        if return_pairs:
            pair_correct, pair_margin = observed.pairs(tie_tol, max_block_bytes)
            n_correct = int(pair_correct.sum())
        else:
            observed.set_factors(max_block_bytes)
            n_correct = observed.count_correct(tie_tol, max_block_bytes)
        del observed
    accuracy = n_correct / n_pairs
    counts = np.empty(0, dtype=np.float64)
    if permuting:
        # The block 0..N of two_vs_two_null: blocks of it concatenate to this null exactly.
        counts = null_counts(
            a,
            b,
            rng,
            0,
            n_permutations,
            distance=distance,
            backend=backend,
            device=device,
            tie_tol=tie_tol,
            max_block_bytes=max_block_bytes,
            n_jobs=n_jobs,
        )
    null = counts / n_pairs

    p_value = two_vs_two_p_value(accuracy, null) if n_permutations else None
    return TwoVsTwoResult(
        accuracy=accuracy,
        n_correct=n_correct,
        n_pairs=n_pairs,
        n_concepts=n,
        p_value=p_value,
        null=null,
        n_permutations=n_permutations,
        seed=recorded_seed,
        distance=distance,
        tie_tol=float(tie_tol),
        pair_correct=pair_correct,
        pair_margin=pair_margin,
    )


def two_vs_two_null(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    n_permutations: int,
    start: int = 0,
    stop: int | None = None,
    distance: str = "pearson",
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    tie_tol: float = TIE_TOL,
    backend: str = "numpy",
    device: str = "cpu",
    max_block_bytes: int | None = None,
    n_jobs: int | None = None,
) -> np.ndarray:
    """The null accuracies of permutations ``start..stop-1`` of a 2 vs 2 permutation test.

    The permutations are those :func:`two_vs_two` draws for the same ``seed`` (the first
    ``start`` are drawn and dropped) and run through the same code, so blocks covering 0..N,
    concatenated in order, equal ``two_vs_two(..., n_permutations=N, seed=seed).null`` bit
    for bit; :func:`two_vs_two_p_value` of the observed accuracy and that null is its p-value.

    Args:
        sim_a: n x n similarity matrix of space A.
        sim_b: n x n similarity matrix of space B, same concepts in the same order.
        n_permutations: N, the size of the whole test the block belongs to.
        start: first permutation of the block (0-based).
        stop: one past its last permutation (default N).
        distance: "pearson" (d = 1 - r, default) or "cosine".
        seed: integer seed of the test, or a Generator whose current state starts the stream.
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.
        tie_tol: as for :func:`two_vs_two`.
        backend: "numpy" (default) or "torch".
        device: "cpu", or "cuda"/"cuda:N" with the torch backend.
        max_block_bytes: memory bound for the per-block work arrays (default as for
            :func:`two_vs_two`).
        n_jobs: threads running permutations at once with the numpy backend.

    Returns:
        float64 array of stop - start permuted accuracies, in stream order.

    Raises:
        ConfigError: unknown distance/backend, unavailable device, bad permutation settings,
            or a block outside 0..N.
        InputError: matrices of different or non-square shape.
        DegenerateInputError: fewer than 4 concepts, NaN/inf entries (names the concepts), or
            concept pairs whose distance is undefined (names the pairs).
    """
    _check_options(distance, backend, tie_tol)
    max_block_bytes = block_bytes(device, max_block_bytes)
    start, stop = check_block(start, stop, n_permutations)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    check_pairs_defined(a, b, distance, labels, space_a, space_b)
    rng, _ = make_rng(seed)
    n = a.shape[0]
    counts = null_counts(
        a,
        b,
        rng,
        start,
        stop,
        distance=distance,
        backend=backend,
        device=device,
        tie_tol=tie_tol,
        max_block_bytes=max_block_bytes,
        n_jobs=n_jobs,
    )
    return counts / (n * (n - 1) // 2)


def two_vs_two_p_value(accuracy: float, null: np.ndarray) -> float:
    """Permutation p-value of a 2 vs 2 accuracy: (1 + #{null >= accuracy}) / (1 + N).

    Accuracies are exact ratios of integer counts: they are compared without tolerance.
    """
    return permutation_p_value(accuracy, null, tol=0.0)


#: How many undefined pairs an error message lists.
_MAX_PAIRS_NAMED = 5


def undefined_pairs(
    sim: Any, distance: str = "pearson", block_entries: int = CHECK_BLOCK_ENTRIES
) -> np.ndarray:
    """Pairs (i < j) whose kept entries of row i or row j are constant (or all zero).

    Row i with entries i and j removed is constant when every off-diagonal entry but the
    j-th lies within ``CONSTANT_RTOL`` of the row's magnitude of one value; for the cosine
    distance, when they are all zero. Returns a k x 2 array of index pairs, sorted.
    ``sim`` is a numpy array or a torch tensor (checked on its device, same decisions).
    """
    is_tensor = not isinstance(sim, np.ndarray) and hasattr(sim, "device")
    m = sim if is_tensor else np.asarray(sim, dtype=np.float64)
    n = m.shape[0]
    found: set[tuple[int, int]] = set()

    def column(i: int, k: int) -> int:
        return k if k < i else k + 1

    # Row by row quantities, a block of rows at a time (memory O(n x block)).
    for i0, i1 in row_blocks(n, n, block_entries):
        rows = _tensor_rows_state if is_tensor else _numpy_rows_state
        every, one, drop = rows(m, i0, i1, distance)
        for r in np.flatnonzero(every):
            i = i0 + int(r)
            found.update((min(i, j), max(i, j)) for j in range(n) if j != i)
        for r in np.flatnonzero(one):
            i = i0 + int(r)
            j = column(i, int(drop[r]))
            found.add((min(i, j), max(i, j)))
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def _numpy_rows_state(
    m: np.ndarray, i0: int, i1: int, distance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows i0..i1-1: constant without any one entry (every), without exactly one entry
    (one), and that entry's index among the off-diagonal ones (drop)."""
    n = m.shape[0]
    keep = np.ones((i1 - i0, n), dtype=bool)
    keep[np.arange(i1 - i0), np.arange(i0, i1)] = False
    off = m[i0:i1][keep].reshape(i1 - i0, n - 1)
    # Only the two smallest and two largest of each row matter: a partition finds them
    # (the same values a full sort puts there) in O(n) per row.
    if distance == "cosine":
        mags = np.abs(off)
        every, one = _zero_rows(_extremes(mags))
        return every, one, np.argmax(mags, axis=1)
    tol = CONSTANT_RTOL * np.maximum(np.abs(off).max(axis=1), 1e-300)
    every, one, without_max = _constant_rows(_extremes(off), tol)
    drop = np.where(without_max, np.argmax(off, axis=1), np.argmin(off, axis=1))
    return every, one, drop


def _tensor_rows_state(
    m: Any, i0: int, i1: int, distance: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_numpy_rows_state` with torch on the tensor's device (same values, same rule)."""
    import torch

    n = m.shape[0]
    keep = torch.ones((i1 - i0, n), dtype=torch.bool, device=m.device)
    keep[torch.arange(i1 - i0), torch.arange(i0, i1)] = False
    off = m[i0:i1][keep].reshape(i1 - i0, n - 1)

    def extremes(rows: Any) -> Any:
        low = torch.topk(rows, 2, dim=1, largest=False, sorted=True).values
        high = torch.topk(rows, 2, dim=1, largest=True, sorted=True).values
        return torch.cat([low, high.flip(1)], dim=1)

    if distance == "cosine":
        mags = off.abs()
        every, one = _zero_rows(extremes(mags))
        drop = mags.argmax(dim=1)
    else:
        tol = CONSTANT_RTOL * off.abs().max(dim=1).values.clamp(min=1e-300)
        every, one, without_max = _constant_rows(extremes(off), tol)
        drop = torch.where(without_max, off.argmax(dim=1), off.argmin(dim=1))
    return every.cpu().numpy(), one.cpu().numpy(), drop.cpu().numpy()


def _zero_rows(order: Any) -> tuple[Any, Any]:
    """From each row's two smallest and two largest magnitudes (numpy or torch): all zero
    without any one entry (every), and all zero without exactly one entry (one)."""
    every = order[:, -1] == 0
    return every, ~every & (order[:, -2] == 0)


def _constant_rows(order: Any, tol: Any) -> tuple[Any, Any, Any]:
    """From each row's two smallest and two largest values (numpy or torch): constant within
    ``tol`` without any one entry (every), without exactly one entry (one), and whether that
    entry is the largest (else the smallest)."""
    every = order[:, -1] - order[:, 0] <= tol
    without_max = order[:, -2] - order[:, 0] <= tol
    without_min = order[:, -1] - order[:, 1] <= tol
    return every, ~every & (without_max | without_min), without_max


def _extremes(rows: np.ndarray) -> np.ndarray:
    """Columns 0, 1, -2, -1 of each row sorted: its two smallest and two largest values."""
    k = rows.shape[1]
    kth = sorted({0, min(1, k - 1), max(k - 2, 0), k - 1})
    part = np.partition(rows, kth, axis=1)
    return part[:, [0, min(1, k - 1), max(k - 2, 0), k - 1]]


def check_pairs_defined(
    a: Any,
    b: Any,
    distance: str,
    labels: Sequence[str] | None,
    space_a: str,
    space_b: str,
    block_entries: int = CHECK_BLOCK_ENTRIES,
) -> None:
    """Raise DegenerateInputError naming the concept pairs whose 2 vs 2 distance is undefined."""
    names = resolve_labels(labels, a.shape[0], space_a)
    for m, space in ((a, space_a), (b, space_b)):
        bad = undefined_pairs(m, distance, block_entries)
        if len(bad):
            shown = ", ".join(f"({names[i]}, {names[j]})" for i, j in bad[:_MAX_PAIRS_NAMED])
            more = f" and {len(bad) - _MAX_PAIRS_NAMED} more" if len(bad) > _MAX_PAIRS_NAMED else ""
            what = "all zero" if distance == "cosine" else "constant"
            raise DegenerateInputError(
                f"space {space!r}: {len(bad)} concept pair(s) have {what} similarities once "
                f"the pair's own entries are removed, so their 2 vs 2 distance is undefined: "
                f"{shown}{more}; drop one concept of each pair or use another similarity"
            )


def _check_options(distance: str, backend: str, tie_tol: float) -> None:
    if distance not in DISTANCES:
        raise ConfigError(f"unknown 2 vs 2 distance {distance!r} (choose {', '.join(DISTANCES)})")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    if not tie_tol >= 0:
        raise ConfigError(f"tie_tol must be >= 0, got {tie_tol!r}")


def _block_entries(max_block_bytes: int) -> int:
    """Entries per block of the whole-row passes under a block memory bound."""
    return min(CHECK_BLOCK_ENTRIES, max(1, max_block_bytes // (8 * 8)))
