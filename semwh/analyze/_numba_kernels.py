"""numba kernels of the permutation nulls; imported only through :mod:`semwh.analyze.kernels`.

Each kernel makes one pass over the concept pairs for a block of P permutations: the
per-pair terms that do not depend on the permutation are computed once per tile of pairs
and reused for every permutation of the block, nothing of size n x n is allocated, and the
tiles (or rows) run in parallel (``prange``). Sums are accumulated per tile or row in a
fixed order and added in a fixed order, so a permutation's value does not depend on the
block it is counted in or on the number of threads. No ``fastmath``: the arithmetic is the
reference's, operation for operation, in IEEE float64.

``cache=True``: each machine compiles a kernel once (on its first use) and keeps it beside
this module (or in ``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

__all__ = ["gathered_dots", "numba", "transpose_into", "two_vs_two_counts"]


@njit(cache=True, parallel=True, nogil=True)
def two_vs_two_counts(
    a, sa, qa, da, k, pearson, b_raw, perms, mu_p, db_p, t_p, u_p, v_p, w_p, g_p, c, ct, tol
):  # fmt: skip
    """Correct-pair counts of A against B relabelled by each row of ``perms``.

    ``a``: A centred by rows (Pearson) or as is; ``sa``, ``qa``, ``da``: its row sums, sums
    of squares and diagonal. ``b_raw``: B, exactly symmetric. ``*_p``: B's row statistics
    (mean, diagonal, sum without the diagonal, sum of squares without it, and the terms
    v, w of :class:`~semwh.analyze.two_vs_two_fast_null.FusedNull`) relabelled, P x n.
    ``g_p``: each row's dot product with its relabelled row of B, less the diagonal terms.
    ``c``, ``ct``: P x n x n cross products of whole rows, c[q, i, j] = A_i . B'_j and
    ct[q, i, j] = B'_i . A_j for permutation q.
    """
    n = a.shape[0]
    n_perm = perms.shape[0]
    partial = np.zeros((n, n_perm), dtype=np.int64)
    k1 = k + 1.0
    kk = float(n - 2)
    for r in prange(n - 1):
        # Long and short rows alternate, so the threads' shares of the triangle are equal.
        i = r // 2 if r % 2 == 0 else n - 2 - r // 2
        m = n - i - 1
        # A's terms of row i's pairs (FusedNull._terms), once for all permutations.
        e1 = np.empty(m)
        e2 = np.empty(m)
        e4 = np.empty(m)
        e5 = np.empty(m)
        f5 = np.empty(m)
        e6 = np.empty(m)
        f6 = np.empty(m)
        dai = da[i]
        for y in range(m):
            j = i + 1 + y
            daj = da[j]
            aij = a[i, j]
            aji = a[j, i]
            ss_i = qa[i] - dai * dai - aij * aij
            ss_j = qa[j] - aji * aji - daj * daj
            s_i = 0.0
            s_j = 0.0
            if pearson:
                s_i = sa[i] - dai - aij
                s_j = sa[j] - aji - daj
                ss_i = kk * ss_i - s_i * s_i
                ss_j = kk * ss_j - s_j * s_j
            iai = 1.0 / np.sqrt(ss_i)
            iaj = 1.0 / np.sqrt(ss_j)
            e3 = k * (iaj * daj - iai * aij)
            f3 = k * (iai * dai - iaj * aji)
            e1[y] = k * iai
            e2[y] = k * iaj
            e5[y] = k * (iaj * aji)
            f5[y] = k * (iai * aij)
            if pearson:
                e4v = iaj * s_j - iai * s_i
                e4[y] = e4v
                e6[y] = e3 - e4v
                f6[y] = f3 + e4v
            else:
                e4[y] = 0.0
                e6[y] = e3
                f6[y] = f3
        for q in range(n_perm):
            brow = b_raw[perms[q, i]]
            pj = perms[q, i + 1 :]
            c1 = c[q, i, i + 1 :]
            c2 = ct[q, i, i + 1 :]
            muj = mu_p[q, i + 1 :]
            gj = g_p[q, i + 1 :]
            tj = t_p[q, i + 1 :]
            uj = u_p[q, i + 1 :]
            vj = v_p[q, i + 1 :]
            wj = w_p[q, i + 1 :]
            dbj = db_p[q, i + 1 :]
            mui = mu_p[q, i]
            gi = g_p[q, i]
            ti = t_p[q, i]
            ui = u_p[q, i]
            vi = v_p[q, i]
            wi = w_p[q, i]
            dbi = db_p[q, i]
            count = 0
            if pearson:
                for y in range(m):
                    br = brow[pj[y]]
                    bb = br - mui
                    bj = br - muj[y]
                    x = e1[y] * gi + e4[y] * ti + e5[y] * dbi - e2[y] * c2[y] + e6[y] * bb
                    z = e2[y] * gj[y] - e4[y] * tj[y] + f5[y] * dbj[y] - e1[y] * c1[y] + f6[y] * bj
                    # NaN (an undefined correlation) compares False: not correct.
                    if (
                        x / np.sqrt(vi + bb * (wi - k1 * bb))
                        + z / np.sqrt(vj[y] + bj * (wj[y] - k1 * bj))
                        > tol
                    ):
                        count += 1
            else:
                for y in range(m):
                    br = brow[pj[y]]
                    x = e1[y] * gi + e5[y] * dbi - e2[y] * c2[y] + e6[y] * br
                    z = e2[y] * gj[y] + f5[y] * dbj[y] - e1[y] * c1[y] + f6[y] * br
                    if x / np.sqrt(ui - br * br) + z / np.sqrt(uj[y] - br * br) > tol:
                        count += 1
            partial[i, q] = count
    out = np.zeros(n_perm, dtype=np.int64)
    for i in range(n):
        for q in range(n_perm):
            out[q] += partial[i, q]
    return out


@njit(cache=True, nogil=True)
def transpose_into(c, ct):
    """ct = c.T for an n x n array, in tiles that stay in cache (one thread; the caller's
    threads transpose several at once)."""
    n = c.shape[0]
    size = 64
    for i0 in range(0, n, size):
        i1 = min(i0 + size, n)
        for j0 in range(0, n, size):
            j1 = min(j0 + size, n)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    ct[j, i] = c[i, j]
    return ct


@njit(cache=True, parallel=True, nogil=True)
def gathered_dots(left, table, perms, diagonal):
    """sum_{i<j} left[i, j] table[p_i, p_j] for each row p of ``perms`` (plus half the
    diagonal terms left[i, i] table[p_i, p_i] when ``diagonal``), in float64 whatever the
    storage (float32 tables gather half the bytes), each row's sum in a fixed order."""
    n = left.shape[0]
    n_perm = perms.shape[0]
    partial = np.zeros((n, n_perm))
    for r in prange(n):
        # Long and short rows alternate, so the threads' shares of the triangle are equal.
        i = r // 2 if r % 2 == 0 else n - 1 - r // 2
        for q in range(n_perm):
            pi = perms[q, i]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            j = i + 1
            # Four running sums break the chain of dependent additions.
            while j + 3 < n:
                s0 += np.float64(left[i, j]) * np.float64(table[pi, perms[q, j]])
                s1 += np.float64(left[i, j + 1]) * np.float64(table[pi, perms[q, j + 1]])
                s2 += np.float64(left[i, j + 2]) * np.float64(table[pi, perms[q, j + 2]])
                s3 += np.float64(left[i, j + 3]) * np.float64(table[pi, perms[q, j + 3]])
                j += 4
            while j < n:
                s0 += np.float64(left[i, j]) * np.float64(table[pi, perms[q, j]])
                j += 1
            s = (s0 + s1) + (s2 + s3)
            if diagonal:
                s += 0.5 * (np.float64(left[i, i]) * np.float64(table[pi, pi]))
            partial[i, q] = s
    out = np.zeros(n_perm)
    for i in range(n):
        for q in range(n_perm):
            out[q] += partial[i, q]
    return out
