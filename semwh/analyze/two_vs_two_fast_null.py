"""The 2 vs 2 permutation null, fast: A's terms once, each relabelling of B one fused pass.

:func:`semwh.analyze.two_vs_two.two_vs_two` relabels the concepts of B (rows and columns of
S_B together) N times and counts the correct pairs of each relabelling, by the definition
and tie rule of :mod:`semwh.analyze.two_vs_two`. Counting them with
:class:`~semwh.analyze.two_vs_two_margins.BlockMargins` for every relabelled B would redo,
per permutation, everything that depends on A alone. This module avoids that and explains
why the counts stay the definition's:

* **One fused pass per block** (:class:`FusedNull`, numpy backend). Write the margin of pair
  (i, j) as X / |b_i| + Y / |b_j|: |b_i| is the norm of B's row i without entries i and j
  (centred for Pearson), and X and Y are linear in the relabelled B's values with
  coefficients (e*, f* in ``_FUSED_COUNT``) that depend on A alone. Those coefficients are
  computed once per block of rows; a permutation then costs one gather of B, the cross
  products A B'^T and one numexpr pass over about a dozen arrays. The algebra is the one of
  :meth:`BlockMargins.margins`, regrouped; the same tie rule applies (a pair counts only when
  its margin exceeds ``tie_tol``; NaN, undefined or j <= i, compares False).
* **Row statistics are relabelled, not recomputed.** A relabelled B's row sums, sums of
  squares and diagonal are B's own, permuted. With B exactly symmetric (similarity
  matrices are), the relabelled B's entry [j, i] is its raw entry [i, j] minus row j's
  mean, bit for bit what a centred copy holds, so no transposed copy is made.
* **Compiled** (:class:`CompiledNull`, :mod:`semwh.analyze.kernels`). The same algebra in
  one numba kernel per block of permutations: A's terms of a row of pairs are computed once
  and reused for every permutation of the block, nothing of size n x n is allocated per
  pair pass, rows run in parallel. The block's cross products A B'^T run first as whole
  matrix products on the permutation threads (through both sides' low-rank factors when
  both have them, O(n^2 r)). Counts equal the numexpr pass's (the tests compare them).
* **Only A symmetric.** The margin is symmetric in A and B, and relabelling both by the
  inverse permutation q of p maps (A, B[p][:, p]) to (A[q][:, q], B): B is then held fixed
  and A relabelled by q instead. Neither symmetric (or the torch backend): B is relabelled
  and counted by :class:`BlockMargins` itself, with A's block terms kept when they fit.
* **Low rank.** When A or B has rank r well below n, its factors carry A B'^T in O(n^2 r);
  they reproduce the matrix to ``LOW_RANK_RTOL`` (relative), far below the tie tolerance.
* **The same permutations.** Permutation k of a test is the k-th draw of its seed's stream
  (:func:`semwh.analyze.permutation.permutation_stream`), whatever the block, batch or
  thread that counts it: blocks ``start..stop`` concatenate to the null of the whole test
  bit for bit.

The tests compare these nulls with the pair-by-pair reference of every relabelling
(``tests/unit/analyze``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import numexpr
import numpy as np
from threadpoolctl import threadpool_limits

from semwh.analyze import kernels
from semwh.analyze.permutation import permutation_stream
from semwh.analyze.two_vs_two_margins import (
    LOW_RANK_RTOL,
    BlockMargins,
    cross_products,
    projected_svd,
    svd_factors,
    svd_rank,
)


def null_counts(
    a: np.ndarray,
    b: np.ndarray,
    rng: np.random.Generator,
    start: int,
    stop: int,
    *,
    distance: str,
    backend: str,
    device: str,
    tie_tol: float,
    max_block_bytes: int,
    n_jobs: int | None,
) -> np.ndarray:
    """Correct-pair counts of relabellings ``start..stop-1`` of B's stream from ``rng``.

    ``a``, ``b``: checked n x n similarity matrices (no undefined pairs). Returns float64
    counts, in stream order; divide by n(n-1)/2 for the null accuracies.
    """
    permuting = stop > start
    with _blas_limit(backend, permuting), np.errstate(invalid="ignore", divide="ignore"):
        kernel, fused = _null_kernel(a, b, distance, backend, device, permuting, max_block_bytes)
        return _counts(kernel, a, b, fused, rng, start, stop, tie_tol, max_block_bytes, n_jobs)


def _blas_limit(backend: str, permuting: bool) -> Any:
    """Single-threaded BLAS while permutations run on threads with the numpy backend."""
    if backend == "numpy" and permuting:
        return threadpool_limits(limits=1, user_api="blas")
    return nullcontext()


def _null_kernel(
    a: np.ndarray,
    b: np.ndarray,
    distance: str,
    backend: str,
    device: str,
    permuting: bool,
    max_block_bytes: int,
) -> tuple[BlockMargins, bool]:
    """The margins of (A, B) and whether the null takes the fused path.

    The fused null needs one exactly symmetric matrix (similarity matrices are) and the
    numpy backend; otherwise the kernel relabels B itself and keeps A's blocks when they fit.
    """
    n = a.shape[0]
    if not permuting:
        # Nothing to relabel: a streaming kernel holds no copies of the matrices.
        kernel = BlockMargins(a, distance, backend, device, stream=True)
        kernel.set_b(b)
        return kernel, False
    fused = backend == "numpy" and (np.array_equal(b, b.T) or np.array_equal(a, a.T))
    kernel = BlockMargins(a, distance, backend, device)
    kernel.set_b(b)
    kernel.cache_a = not fused and permuting and 3 * n * n * 8 <= max_block_bytes
    return kernel, fused


def _counts(
    kernel: BlockMargins,
    a: np.ndarray,
    b: np.ndarray,
    fused: bool,
    rng: np.random.Generator,
    start: int,
    stop: int,
    tie_tol: float,
    max_block_bytes: int,
    n_jobs: int | None,
) -> np.ndarray:
    """Correct-pair counts for relabellings start..stop-1 of B (rows and columns together).

    `fused`: use :class:`FusedNull` (numpy backend, B or A exactly symmetric); else the
    kernel's own margins, relabelled B by relabelled B.
    """
    counts = np.empty(stop - start, dtype=np.float64)
    if stop == start:
        return counts
    jobs = 1 if kernel.torch is not None else n_jobs or min(8, os.cpu_count() or 1)
    block = (
        compiled_block(kernel.n, max_block_bytes) if fused and tie_tol >= COMPILED_TIE_TOL else 0
    )
    batches = list(permutation_stream(rng, kernel.n, start, stop, block or 8))
    starts = np.cumsum([0] + [len(batch) for batch in batches])
    if block:
        compiled_counts = _compiled_counts(kernel, a, b, tie_tol, batches, jobs)
        if compiled_counts is not None:
            counts[:] = compiled_counts
            return counts
    counter: Callable[[], Callable[[np.ndarray], int]]
    if fused:
        count = _fused_count(kernel, a, b, tie_tol, max_block_bytes)

        def counter() -> Callable[[np.ndarray], int]:
            return count

    else:
        b_prepared = kernel.b

        def counter() -> Callable[[np.ndarray], int]:
            # Each worker relabels B in its own shallow copy; A's cached blocks are shared.
            worker = copy.copy(kernel)

            def count(perm: np.ndarray) -> int:
                worker.set_b_prepared(worker.permuted_b(b_prepared, perm))
                return worker.count_correct(tie_tol, max_block_bytes)

            return count

    def run(index: int) -> None:
        count = counter()
        # errstate is per thread: undefined correlations (NaN) are expected, not warnings.
        with np.errstate(invalid="ignore", divide="ignore"):
            for offset, perm in enumerate(batches[index]):
                counts[starts[index] + offset] = count(perm)

    # Permutations run on threads (numpy, numexpr and BLAS release the GIL); the caller keeps
    # BLAS single-threaded: its own threads would oversubscribe the cores, and OpenBLAS
    # threads that spin while waiting make every product many times slower on a busy machine.
    if jobs <= 1 or len(batches) == 1:
        for index in range(len(batches)):
            run(index)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(run, range(len(batches))))
    return counts


def _fused_count(
    kernel: BlockMargins, a: np.ndarray, b: np.ndarray, tie_tol: float, max_block_bytes: int
) -> Callable[[np.ndarray], int]:
    """A function perm -> count for the fused path; needs B (or else A) exactly symmetric.

    The 2 vs 2 margin is symmetric in A and B, and relabelling both by the inverse of p
    maps (A, B[p][:, p]) to (A[q][:, q], B): with only A symmetric, B is held fixed and A is
    relabelled by the inverse permutation instead.
    """
    if np.array_equal(b, b.T):
        return FusedNull(kernel, b, tie_tol, max_block_bytes).count
    fixed = BlockMargins(b, kernel.distance, "numpy", "cpu")
    fixed.set_b(a)
    fused = FusedNull(fixed, a, tie_tol, max_block_bytes)
    return lambda perm: fused.count(np.argsort(perm))


#: Permutations per call of the compiled 2 vs 2 kernel (fewer when their cross products,
#: two n x n arrays each, would pass the block memory bound).
COMPILED_BLOCK = 8


#: The smallest tie tolerance the compiled 2 vs 2 kernel counts with. Its margins differ from
#: the numpy path's in their last bits (products of other shapes, sums in another order);
#: a tolerance above that rounding gives equal counts, a smaller one (tie_tol=0, exact ties)
#: would let the last bits decide, so the numpy reference counts there.
COMPILED_TIE_TOL = 1e-10


def compiled_block(n: int, max_block_bytes: int) -> int:
    """Permutations per compiled-kernel call; 0 where the numpy path runs (no compiled
    kernels, or one permutation's cross products above the block memory bound)."""
    # Two n x n float64 arrays (A B'^T and its transpose) per permutation.
    block = min(COMPILED_BLOCK, max_block_bytes // (16 * n * n + 1))
    if block < 1 or not kernels.use_compiled(n):
        return 0
    return block


def _compiled_counts(
    kernel: BlockMargins,
    a: np.ndarray,
    b: np.ndarray,
    tie_tol: float,
    batches: list[np.ndarray],
    jobs: int,
) -> np.ndarray | None:
    """Counts of every batch through the compiled kernel; None when it fails to compile."""
    if np.array_equal(b, b.T):
        null = CompiledNull(FusedNull(kernel, b, tie_tol, 0), jobs)
        relabel = None
    else:
        fixed = BlockMargins(b, kernel.distance, "numpy", "cpu")
        fixed.set_b(a)
        null = CompiledNull(FusedNull(fixed, a, tie_tol, 0), jobs)
        relabel = np.argsort
    parts = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for perms in batches:
            if relabel is not None:
                perms = relabel(perms, axis=1)
            part = null.counts(perms, pool)
            if part is None:
                return None
            parts.append(part)
    return np.concatenate(parts).astype(np.float64)


class CompiledNull:
    """:class:`FusedNull`'s counts for a block of permutations in one compiled pass.

    The cross products A B'^T of the block's permutations and their transposes are computed
    first (single-threaded BLAS on the permutation threads, through the low-rank factors
    when a side has them), then one kernel walks the pairs row by row, rows in parallel:
    A's terms of a row once, then every permutation of the block
    (:func:`semwh.analyze._numba_kernels.two_vs_two_counts`).
    """

    def __init__(self, fused: FusedNull, jobs: int) -> None:
        self.fused = fused
        self.jobs = jobs
        self.rows = np.arange(fused.n)
        # Both sides low rank: A B'^T = L_A (R_A^T R_B[p]) L_B[p]^T costs O(n^2 r_B).
        self.both: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        a_factors, b_factors = fused.a_factors, fused.b_factors
        if a_factors is not None and b_factors is None:
            b_factors = _low_rank(fused.kernel.b, fused.n // 3)
        elif b_factors is not None and a_factors is None:
            a_factors = _low_rank(fused.a, fused.n // 3)
        if a_factors is not None and b_factors is not None:
            self.both = (*a_factors, *b_factors)
        if fused.a_factors is not None:
            # (B' R)[i] = (B R[q])[p_i] - mu[p_i] sum(R): no relabelled copy of B is made.
            self.col_sums = fused.a_factors[1].sum(axis=0)

    def _product(self, perm: np.ndarray, out: np.ndarray) -> None:
        """out = A B'^T (whole rows), B' = B relabelled by ``perm`` (rows centred)."""
        f = self.fused
        if self.both is not None:
            la, ra, lb, rb = self.both
            np.matmul(la @ (ra.T @ rb[perm]), lb[perm].T, out=out)
        elif f.a_factors is not None:
            left, right = f.a_factors
            inverse = np.empty_like(perm)
            inverse[perm] = self.rows
            w = (f.b_raw @ right[inverse])[perm]
            if f.distance == "pearson":
                w -= f.mu[perm][:, None] * self.col_sums
            np.matmul(left, w.T, out=out)
        elif f.b_factors is not None:
            lb, rb = f.b_factors
            np.matmul(f.a @ rb[perm], lb[perm].T, out=out)
        else:
            bc = f.b_raw.take(perm, axis=0).take(perm, axis=1)
            if f.distance == "pearson":
                bc -= f.mu[perm][:, None]
            np.matmul(f.a, bc.T, out=out)

    def counts(self, perms: np.ndarray, pool: ThreadPoolExecutor) -> np.ndarray | None:
        """Correct-pair counts of each row of ``perms`` (int64), or None (no compiler)."""
        f = self.fused
        n = f.n
        perms = np.ascontiguousarray(perms, dtype=np.int64)
        c = np.empty((len(perms), n, n))
        ct = np.empty_like(c)

        def product(q: int) -> bool:
            self._product(perms[q], c[q])
            return kernels.run("transpose_into", c[q], ct[q], parallel=False) is not None

        if not all(pool.map(product, range(len(perms)))):
            return None
        db_p = f.db[perms]
        g_p = c[:, self.rows, self.rows] - f.da[None, :] * db_p
        return kernels.run(
            "two_vs_two_counts",
            f.a, f.kernel.sa, f.kernel.qa, f.da, f.k, f.distance == "pearson", f.b_raw,
            perms, f.mu[perms], db_p, f.t[perms], f.u[perms], f.v[perms], f.w[perms], g_p, c,
            ct, f.tie_tol,
            threads=self.jobs,
        )  # fmt: skip


#: Block margin counts evaluated in one numexpr pass (see :class:`FusedNull`). With the
#: per-pair A terms e*, f* precomputed, margin = X / |b_i| + Y / |b_j| where X and Y are linear
#: in the relabelled B's values; NaN (j <= i, or an undefined correlation) compares False.
_FUSED_COUNT = {
    "pearson": (
        "sum(where((e1*gi + e4*ti + e5*dbi - e2*c2 + e6*bb) / sqrt(vi + bb*(wi - k1*bb))"
        " + (e2*gj - e4*tj + f5*dbj - e1*c1 + f6*(br - muj))"
        " / sqrt(vj + (br - muj)*(wj - k1*(br - muj))) > tol, 1, 0))"
    ),
    "cosine": (
        "sum(where((e1*gi + e5*dbi - e2*c2 + e6*bb) / sqrt(ui - bb*bb)"
        " + (e2*gj + f5*dbj - e1*c1 + f6*bb) / sqrt(uj - bb*bb) > tol, 1, 0))"
    ),
}


def _low_rank(m: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(L, R) with m = L R^T to LOW_RANK_RTOL and L, R n x r, r <= max_rank; else None.

    Similarity matrices of d-dimensional vectors have rank at most d + 1 (after centring):
    the permutation products then cost O(n^2 d) instead of O(n^3). The range comes from
    :func:`~semwh.analyze.two_vs_two_margins.projected_svd` of ``max_rank`` columns.
    """
    n = m.shape[0]
    if max_rank < 1:
        return None
    q, u, s, vt = projected_svd(lambda r0, r1: m[r0:r1], n, [(0, n)], max_rank)
    if not s[0] > 0:
        return None
    left, right = svd_factors(q, u, s, vt, svd_rank(s))
    if not np.linalg.norm(m - left @ right.T) <= LOW_RANK_RTOL * float(np.linalg.norm(m)):
        return None
    return left, right


class FusedNull:
    """Correct-pair counts of (A, B relabelled) for the numpy backend, fused per block.

    Requires B exactly symmetric (as from :func:`similarity_matrix`): then the relabelled
    B's entry [j, i] is its raw entry [i, j] minus row j's mean, bit for bit what the
    centred copy holds, so no transposed copies are made. Everything that depends only on A
    (its per-pair sums, inverse norms and the products of them) is computed once per block;
    a permutation costs one gather of B, the cross products A B'^T (low rank when one side
    is) and one numexpr pass per block over about a dozen arrays instead of ~50 numpy passes.
    Row statistics of the relabelled B are B's own, relabelled.
    """

    def __init__(
        self,
        kernel: BlockMargins,
        b_raw: np.ndarray,
        tie_tol: float,
        max_block_bytes: int,
    ) -> None:
        n = kernel.n
        self.n = n
        self.kernel = kernel
        # The fused terms replace the kernel's own A cache.
        kernel.drop_a_cache()
        self.distance = kernel.distance
        self.tie_tol = float(tie_tol)
        self.k = float(n - 2) if self.distance == "pearson" else 1.0
        self.b_raw = b_raw
        self.a = kernel.a
        self.da = kernel.da
        b = kernel.b
        self.mu = b_raw.mean(axis=1) if self.distance == "pearson" else np.zeros(n)
        db = b.diagonal().copy()
        sb, qb = kernel.sb, kernel.qb
        self.db = db
        self.t = sb - db
        self.u = qb - db * db
        # k * ss - s^2 of row i without entries i, j is v_i + b_ij (w_i - (k + 1) b_ij).
        self.v = self.k * self.u - self.t * self.t
        self.w = 2.0 * self.t
        rows = max(32, -(-n // 8))
        self.blocks = [(i0, min(i0 + rows, n)) for i0 in range(0, n - 1, rows)][::-1]
        # Seven float64 arrays over the upper half of the matrix.
        self.cache = 7 * 8 * n * n // 2 <= max_block_bytes
        self._a_terms: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self.expr = _FUSED_COUNT[self.distance]
        # Low-rank products when either side allows them (rank well below n).
        self.a_factors: tuple[np.ndarray, np.ndarray] | None = None
        self.b_factors: tuple[np.ndarray, np.ndarray] | None = None
        max_rank = n // 3
        # Below a dozen concepts the products cost nothing next to the numexpr pass.
        if n >= 12:
            self.a_factors = _low_rank(self.a, max_rank)
            if self.a_factors is not None:
                max_rank = self.a_factors[0].shape[1] - 1
            self.b_factors = _low_rank(b, max_rank)
            if self.b_factors is not None:
                self.a_factors = None
        if self.cache:
            # Up front, so that threads running permutations only read them.
            with np.errstate(invalid="ignore", divide="ignore"):
                for i0, i1 in self.blocks:
                    self._terms(i0, i1)

    def _terms(self, i0: int, i1: int) -> dict[str, np.ndarray]:
        """The per-pair A terms of a block: X's and Y's coefficients (see _FUSED_COUNT)."""
        cached = self._a_terms.get((i0, i1))
        if cached is not None:
            return cached
        k = self.k
        aij, aji, s_ai, s_aj, iai, iaj = self.kernel.a_side(i0, i1)
        dai, daj = self.da[i0:i1, None], self.da[None, i0:]
        e1 = k * iai
        # NaN below the diagonal makes those entries compare False: no separate mask.
        e1[np.arange(i0, self.n)[None, :] <= np.arange(i0, i1)[:, None]] = np.nan
        e3 = k * (iaj * daj - iai * aij)
        f3 = k * (iai * dai - iaj * aji)
        terms = {"e1": e1, "e2": k * iaj, "e5": k * (iaj * aji), "f5": k * (iai * aij)}
        if self.distance == "pearson":
            # s_bi = t_i - b_ij enters X as e4 * s_bi: fold its b_ij part into b_ij's term.
            e4 = iaj * s_aj - iai * s_ai
            terms.update(e4=e4, e6=e3 - e4, f6=f3 + e4)
        else:
            terms.update(e6=e3, f6=f3)
        if self.cache:
            self._a_terms[(i0, i1)] = terms
        return terms

    def count(self, perm: np.ndarray) -> int:
        """Correct pairs of A against B relabelled by `perm` (rows and columns)."""
        n, k = self.n, self.k
        br = self.b_raw.take(perm, axis=0).take(perm, axis=1)
        mu = self.mu[perm]
        bc = br - mu[:, None] if self.distance == "pearson" else br
        db, t, u = self.db[perm], self.t[perm], self.u[perm]
        v, w2 = self.v[perm], self.w[perm]
        a = self.a
        factors: tuple[str, np.ndarray, np.ndarray] | None = None
        if self.a_factors is not None:
            left, right = self.a_factors
            factors = ("a", left, bc @ right)
        elif self.b_factors is not None:
            lb, rb = self.b_factors
            factors = ("b", lb[perm], a @ rb[perm])
        # Row i's full dot product with its relabelled B row is the diagonal of A B'^T; the
        # blocks run bottom-up, so every column's value is known before it is needed.
        g = np.empty(n)
        total = 0
        for i0, i1 in self.blocks:
            c1, c2 = cross_products(a, bc, factors, i0, i1)
            rows = np.arange(i1 - i0)
            g[i0:i1] = c1[rows, rows] - self.da[i0:i1] * db[i0:i1]
            names: dict[str, Any] = dict(self._terms(i0, i1))
            names.update(
                c1=c1,
                c2=c2,
                bb=bc[i0:i1, i0:],
                br=br[i0:i1, i0:],
                muj=mu[None, i0:],
                gi=g[i0:i1, None],
                gj=g[None, i0:],
                ti=t[i0:i1, None],
                tj=t[None, i0:],
                ui=u[i0:i1, None],
                uj=u[None, i0:],
                vi=v[i0:i1, None],
                vj=v[None, i0:],
                wi=w2[i0:i1, None],
                wj=w2[None, i0:],
                k1=np.float64(k + 1.0),
                dbi=db[i0:i1, None],
                dbj=db[None, i0:],
                tol=np.float64(self.tie_tol),
            )
            total += int(numexpr.evaluate(self.expr, local_dict=names))
        return total
