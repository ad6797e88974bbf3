"""The 2 vs 2 test between two similarity matrices (DESIGN "Method definitions").

For every pair i < j, a_i is row i of S_A with entries i and j removed (likewise a_j, b_i,
b_j); with d(u, v) = 1 - Pearson(u, v) (option: cosine distance) the pair is correct iff
d(a_i, b_i) + d(a_j, b_j) < d(a_i, b_j) + d(a_j, b_i). Accuracy is the mean over all pairs.

Fast path: a Pearson correlation over the n - 2 kept entries follows from whole-row sums,
sums of squares and dot products minus the two removed terms, so after one matrix product
S_A S_B^T every pair costs O(1) and no Python loop runs over pairs. Pairs are processed in
blocks of rows so memory stays bounded for large n.

Ties: the two sides of the inequality come from different formulas in the fast path and in
a direct computation, so values that are equal in exact arithmetic (duplicated rows, for
example) can differ in the last bits either way. A pair counts as correct only when the
right side exceeds the left by more than `tie_tol` (default 1e-10, far above float64
rounding of these O(n) sums and far below any meaningful difference of distances); within it
the pair is a tie, which is not correct, as DESIGN requires. Any implementation applying the
same rule in float64 makes the same decisions. A pair whose kept entries are constant in
some row has an undefined correlation and counts as not correct.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semwh.analyze._checks import as_similarity_pair
from semwh.analyze.permutation import (
    check_n_permutations,
    make_rng,
    permutation_batches,
    permutation_p_value,
)
from semwh.errors import ConfigError, MissingDependencyError

DISTANCES = ("pearson", "cosine")
BACKENDS = ("numpy", "torch")

#: Default tie tolerance on the difference of the two sums of distances (see module doc).
TIE_TOL = 1e-10

#: Target number of entries per block array: a few MB keeps the elementwise work in cache.
_BLOCK_ENTRIES = 1 << 18


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


class _Kernel:
    """Pair margins of (A, B) for blocks of rows, on numpy or torch arrays.

    A's row statistics are computed once; B can be swapped for a relabelled copy.
    """

    def __init__(self, a: np.ndarray, distance: str, backend: str, device: str) -> None:
        self.distance = distance
        self.n = a.shape[0]
        self.torch: Any = None
        self.sqrt: Any = np.sqrt
        if backend == "torch":
            try:
                import torch
            except ImportError as exc:  # pragma: no cover - torch is a runtime dependency
                raise MissingDependencyError("the torch backend needs torch installed") from exc
            if device.startswith("cuda") and not torch.cuda.is_available():
                raise ConfigError(
                    f"device {device!r} requested but CUDA is not available; use device='cpu'"
                )
            self.torch = torch
            self.device = torch.device(device)
            self.sqrt = torch.sqrt
        else:
            if device != "cpu":
                raise ConfigError(
                    f"the numpy backend runs on the cpu, not {device!r}; use backend='torch'"
                )
        self.a = self._prepare(a)
        self.sa, self.qa, self.da = self._row_stats(self.a)
        # Permutation tests reuse A's per-block quantities when they fit in memory.
        self.cache_a = False
        self._a_cache: dict[tuple[int, int], tuple[Any, ...]] = {}

    def _prepare(self, m: np.ndarray) -> Any:
        if self.distance == "pearson":
            # Pearson is shift-invariant per vector, so centring each whole row changes no
            # correlation but keeps the sums small: less cancellation in k*ss - s^2.
            m = m - m.mean(axis=1, keepdims=True)
        if self.torch is not None:
            return self.torch.as_tensor(np.ascontiguousarray(m), dtype=self.torch.float64).to(
                self.device
            )
        return np.ascontiguousarray(m)

    def _row_stats(self, m: Any) -> tuple[Any, Any, Any]:
        return m.sum(1), (m * m).sum(1), m.diagonal().clone() if self.torch else m.diagonal()

    def set_b(self, b: np.ndarray) -> None:
        self.b = self._prepare(b)
        self.sb, self.qb, self.db = self._row_stats(self.b)
        self.gd = (self.a * self.b).sum(1)

    def set_b_prepared(self, b: Any) -> None:
        self.b = b
        self.sb, self.qb, self.db = self._row_stats(b)
        self.gd = (self.a * b).sum(1)

    def block_rows(self, max_block_bytes: int) -> int:
        n = self.n
        rows = max(64, _BLOCK_ENTRIES // max(n, 1))
        # About 30 live block arrays of float64.
        rows = min(rows, max(1, max_block_bytes // (30 * 8 * max(n, 1))))
        return max(1, min(rows, n))

    def _contiguous(self, m: Any) -> Any:
        if self.torch is not None:
            return m.contiguous()
        return np.ascontiguousarray(m)

    def _a_side(self, i0: int, i1: int) -> tuple[Any, ...]:
        """Quantities of the A rows of a block; they do not change under B's relabelling."""
        key = (i0, i1)
        cached = self._a_cache.get(key)
        if cached is not None:
            return cached
        a, k = self.a, float(self.n - 2)
        aij = a[i0:i1, i0:]
        # Contiguous copies: elementwise work on a transposed view walks memory column-wise.
        aji = self._contiguous(a[i0:, i0:i1].T)
        dai, daj = self.da[i0:i1, None], self.da[None, i0:]
        # Sums of squares (and sums) of rows i and j of A with entries i and j removed.
        ss_ai = self.qa[i0:i1, None] - dai * dai - aij * aij
        ss_aj = self.qa[None, i0:] - aji * aji - daj * daj
        if self.distance == "pearson":
            s_ai = self.sa[i0:i1, None] - dai - aij
            s_aj = self.sa[None, i0:] - aji - daj
            ss_ai = k * ss_ai - s_ai * s_ai
            ss_aj = k * ss_aj - s_aj * s_aj
        else:
            s_ai = s_aj = None
        out = (aij, aji, s_ai, s_aj, 1.0 / self.sqrt(ss_ai), 1.0 / self.sqrt(ss_aj))
        if self.cache_a:
            self._a_cache[key] = out
        return out

    def margins(self, i0: int, i1: int) -> tuple[Any, Any]:
        """Margins for rows i0..i1-1 and columns i0..n-1, plus the mask of pairs j > i.

        margin = (d(a_i,b_j) + d(a_j,b_i)) - (d(a_i,b_i) + d(a_j,b_j))
               = r(a_i,b_i) + r(a_j,b_j) - r(a_i,b_j) - r(a_j,b_i).
        """
        a, b, n = self.a, self.b, self.n
        k = float(n - 2)
        aij, aji, s_ai, s_aj, inv_ai, inv_aj = self._a_side(i0, i1)
        bij = b[i0:i1, i0:]
        bji = self._contiguous(b[i0:, i0:i1].T)
        dbi, dbj = self.db[i0:i1, None], self.db[None, i0:]
        dai, daj = self.da[i0:i1, None], self.da[None, i0:]
        ss_bi = self.qb[i0:i1, None] - dbi * dbi - bij * bij
        ss_bj = self.qb[None, i0:] - bji * bji - dbj * dbj
        # Cross products: whole-row dot product minus the products at i and j.
        c_ii = (self.gd[i0:i1] - self.da[i0:i1] * self.db[i0:i1])[:, None] - aij * bij
        c_jj = (self.gd[i0:] - self.da[i0:] * self.db[i0:])[None, :] - aji * bji
        c_ij = a[i0:i1] @ b[i0:].T
        c_ij -= dai * bji
        c_ij -= aij * dbj
        c_ji = b[i0:i1] @ a[i0:].T
        c_ji -= aji * dbi
        c_ji -= daj * bij
        if self.distance == "pearson":
            s_bi = self.sb[i0:i1, None] - dbi - bij
            s_bj = self.sb[None, i0:] - bji - dbj
            ss_bi = k * ss_bi - s_bi * s_bi
            ss_bj = k * ss_bj - s_bj * s_bj
            c_ii = k * c_ii - s_ai * s_bi
            c_jj = k * c_jj - s_aj * s_bj
            c_ij *= k
            c_ij -= s_ai * s_bj
            c_ji *= k
            c_ji -= s_aj * s_bi
        inv_bi = 1.0 / self.sqrt(ss_bi)
        inv_bj = 1.0 / self.sqrt(ss_bj)
        # r(u, v) = c * inv_u * inv_v; an undefined one (zero variance) makes the margin NaN,
        # which compares False: not correct.
        margin = inv_ai * (c_ii * inv_bi - c_ij * inv_bj)
        margin += inv_aj * (c_jj * inv_bj - c_ji * inv_bi)
        if self.torch is not None:
            rows = self.torch.arange(i0, i1, device=self.device)[:, None]
            cols = self.torch.arange(i0, n, device=self.device)[None, :]
        else:
            rows = np.arange(i0, i1)[:, None]
            cols = np.arange(i0, n)[None, :]
        return margin, cols > rows

    def count_correct(self, tie_tol: float, max_block_bytes: int) -> int:
        step = self.block_rows(max_block_bytes)
        total = 0
        for i0 in range(0, self.n - 1, step):
            margin, mask = self.margins(i0, min(i0 + step, self.n))
            total += int(((margin > tie_tol) & mask).sum())
        return total

    def pairs(self, tie_tol: float, max_block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        full = np.full((n, n), np.nan)
        step = self.block_rows(max_block_bytes)
        for i0 in range(0, n - 1, step):
            i1 = min(i0 + step, n)
            margin, mask = self.margins(i0, i1)
            if self.torch is not None:
                margin, mask = margin.cpu().numpy(), mask.cpu().numpy()
            full[i0:i1, i0:] = np.where(mask, margin, np.nan)
        with np.errstate(invalid="ignore"):
            correct = full > tie_tol
        return correct, full

    def permuted_b(self, b_prepared: Any, perm: np.ndarray) -> Any:
        if self.torch is not None:
            p = self.torch.as_tensor(perm, device=self.device)
            return b_prepared.index_select(0, p).index_select(1, p)
        return b_prepared.take(perm, axis=0).take(perm, axis=1)


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
    max_block_bytes: int = 512 * 2**20,
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
        max_block_bytes: memory bound for the per-block work arrays.
        n_jobs: threads running permutations at once with the numpy backend (default:
            number of CPUs, at most 8); results do not depend on it.

    Returns:
        TwoVsTwoResult.

    Raises:
        ConfigError: unknown distance/backend, unavailable device, bad permutation settings.
        InputError: matrices of different or non-square shape.
        DegenerateInputError: fewer than 4 concepts or NaN/inf entries (names the concepts).
    """
    if distance not in DISTANCES:
        raise ConfigError(f"unknown 2 vs 2 distance {distance!r} (choose {', '.join(DISTANCES)})")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    if not tie_tol >= 0:
        raise ConfigError(f"tie_tol must be >= 0, got {tie_tol!r}")
    n_permutations = check_n_permutations(n_permutations)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    rng, recorded_seed = make_rng(seed)
    n = a.shape[0]
    n_pairs = n * (n - 1) // 2

    kernel = _Kernel(a, distance, backend, device)
    kernel.set_b(b)
    kernel.cache_a = n_permutations > 0 and 3 * n * n * 8 <= max_block_bytes
    pair_correct: np.ndarray | None = None
    pair_margin: np.ndarray | None = None
    with np.errstate(invalid="ignore", divide="ignore"):
        if return_pairs:
            pair_correct, pair_margin = kernel.pairs(tie_tol, max_block_bytes)
            n_correct = int(pair_correct.sum())
        else:
            n_correct = kernel.count_correct(tie_tol, max_block_bytes)
        accuracy = n_correct / n_pairs

        null = _null(kernel, rng, n_permutations, tie_tol, max_block_bytes, n_jobs) / n_pairs

    # Accuracies are exact ratios of integer counts: compare them without tolerance.
    p_value = permutation_p_value(accuracy, null, tol=0.0) if n_permutations else None
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


def _null(
    kernel: _Kernel,
    rng: np.random.Generator,
    n_permutations: int,
    tie_tol: float,
    max_block_bytes: int,
    n_jobs: int | None,
) -> np.ndarray:
    """Correct-pair counts for N relabellings of B (rows and columns together)."""
    counts = np.empty(n_permutations, dtype=np.float64)
    if n_permutations == 0:
        return counts
    b_prepared = kernel.b
    batches = list(permutation_batches(rng, kernel.n, n_permutations, 8))
    starts = np.cumsum([0] + [len(batch) for batch in batches])

    def run(index: int) -> None:
        # Each worker relabels B in its own shallow copy; A's cached blocks are shared.
        worker = copy.copy(kernel)
        # errstate is per thread: undefined correlations (NaN) are expected, not warnings.
        with np.errstate(invalid="ignore", divide="ignore"):
            for offset, perm in enumerate(batches[index]):
                worker.set_b_prepared(worker.permuted_b(b_prepared, perm))
                counts[starts[index] + offset] = worker.count_correct(tie_tol, max_block_bytes)

    jobs = 1 if kernel.torch is not None else (n_jobs or min(8, os.cpu_count() or 1))
    if jobs <= 1 or len(batches) == 1:
        for index in range(len(batches)):
            run(index)
    else:
        # numpy's elementwise kernels and BLAS release the GIL, so threads overlap.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(run, range(len(batches))))
    return counts
