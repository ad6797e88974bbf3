"""The compiled inner cross-validation of regression 2 vs 2 (numba).

:func:`inner_cv` equals ``semwh.analyze.regression._inner_cv_numpy`` bit for bit: each term is
computed with the operations, in the order, of that path's numexpr expression (no fused
multiply-adds: numba leaves fastmath off), and each pair's terms are summed in the order of
numpy's pairwise summation. It reads row j of h and g once for a block of ``_ROWS`` rows i
(which stay in cache) and releases the GIL, so that threads share the blocks.

Importing this module raises ImportError where numba is not installed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

#: Rows of a block (their rows of h and g, 16 KB each at n = 1000, stay in L2).
_ROWS = 8


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _block_sum(a, lo, n):  # pragma: no cover - compiled
    """numpy's sum of a block of at most 128 values: eight running sums, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = lo + 8
    stop = lo + n - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < lo + n:
        res += a[i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _pairwise_sum(a, n, tasks, values):  # pragma: no cover - compiled
    """Sum of a[:n] in the order of numpy's pairwise summation (the same bits): blocks of
    at most 128 values, halves split at a multiple of 8, left + right. Iterative (numba
    cannot cache a recursive function); ``tasks`` (m x 3) and ``values`` are scratch."""
    if n <= 128:
        return _block_sum(a, 0, n)
    top = 0  # tasks: (lo, length, 0) sums a range, (0, 0, 1) adds the last two values
    tasks[0, 0], tasks[0, 1], tasks[0, 2] = 0, n, 0
    stack = 1
    while stack > 0:
        stack -= 1
        lo, m, combine = tasks[stack, 0], tasks[stack, 1], tasks[stack, 2]
        if combine:
            top -= 1
            values[top - 1] = values[top - 1] + values[top]
        elif m <= 128:
            values[top] = _block_sum(a, lo, m)
            top += 1
        else:
            half = m // 2
            half -= half % 8
            tasks[stack, 0], tasks[stack, 1], tasks[stack, 2] = 0, 0, 1
            tasks[stack + 1, 0], tasks[stack + 1, 1], tasks[stack + 1, 2] = lo + half, m - half, 0
            tasks[stack + 2, 0], tasks[stack + 2, 1], tasks[stack + 2, 2] = lo, half, 0
            stack += 3
    return values[0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _inner_cv_rows(h, g, one_hd, gd, i0, i1, out, err, tasks, values):  # pragma: no cover
    """Rows i0..i1-1 of ``_inner_cv_numpy``, each term as its numexpr expression
    computes it (``one_hd`` = 1 - diag(h), ``gd`` = diag(g)). Row j of h and g is read
    once for all the rows of the block, which stay in cache."""
    n = h.shape[0]
    for j in range(i0 + 1, n):
        hj = h[j]
        gj = g[j]
        b = one_hd[j]
        gjj = gd[j]
        for i in range(i0, min(i1, j)):
            hi = h[i]
            gi = g[i]
            a = one_hd[i]
            gii = gd[i]
            x = -hi[j]
            gij = gi[j]
            w = a * b - x * x
            for k in range(n):
                c = one_hd[k]
                y = -hi[k]
                z = -hj[k]
                u = x * z - b * y
                v = x * y - a * z
                det = a * (b * c - z * z) + x * (y * z - x * c) + y * (x * z - b * y)
                err[k] = (
                    u * u * gii
                    + v * v * gjj
                    + w * w * gd[k]
                    + 2 * u * v * gij
                    + 2 * u * w * gi[k]
                    + 2 * v * w * gj[k]
                ) / (det * det)
            err[i] = 0.0
            err[j] = 0.0
            out[i, j] = _pairwise_sum(err, n, tasks, values)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _inner_cv_blocks(h, g, blocks, out):  # pragma: no cover - compiled
    """Rows of ``_inner_cv_numpy`` in the blocks of ``_ROWS`` rows that start at
    ``blocks``; without the GIL, so that threads share the blocks."""
    n = h.shape[0]
    one_hd = 1.0 - np.diag(h)
    gd = np.diag(g).copy()
    err = np.empty(n)
    tasks = np.empty((192, 3), dtype=np.int64)
    values = np.empty(96)
    for i0 in blocks:
        i1 = min(i0 + _ROWS, n)
        _inner_cv_rows(h, g, one_hd, gd, i0, i1, out, err, tasks, values)


def inner_cv(h: np.ndarray, g: np.ndarray, jobs: int | None = None) -> np.ndarray:
    """``semwh.analyze.regression._inner_cv_numpy`` (the same bits) by the compiled kernel,
    its blocks of rows dealt to ``jobs`` threads (default: the CPUs, at most 8) so that each
    carries the same work: block t goes with block m - 1 - t (the rows of a block have n - i
    pairs each)."""
    h = np.ascontiguousarray(h, dtype=np.float64)
    g = np.ascontiguousarray(g, dtype=np.float64)
    n = h.shape[0]
    out = np.full((n, n), np.inf)
    starts = np.arange(0, max(n - 1, 0), _ROWS, dtype=np.int64)
    order = np.empty_like(starts)
    order[0::2] = starts[: (starts.size + 1) // 2]
    order[1::2] = starts[(starts.size + 1) // 2 :][::-1]
    jobs = max(1, min(jobs or min(8, os.cpu_count() or 1), starts.size // 2 or 1))
    dealt = (np.arange(order.size) // 2) % jobs
    shares = [order[dealt == w] for w in range(jobs)]
    if jobs == 1:
        _inner_cv_blocks(h, g, order, out)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda share: _inner_cv_blocks(h, g, share, out), shares))
    return out
