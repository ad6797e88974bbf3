"""The 2 vs 2 margin of every pair from whole-row sums, a block of rows at a time.

:mod:`semwh.analyze.two_vs_two` defines the statistic pair by pair: rows i and j of S_A and
S_B with entries i and j removed, four correlations, one comparison. This module computes
the same margins,

    margin(i, j) = (d(a_i,b_j) + d(a_j,b_i)) - (d(a_i,b_i) + d(a_j,b_j))
                 = r(a_i,b_i) + r(a_j,b_j) - r(a_i,b_j) - r(a_j,b_i),

without cutting a single row. Why the numbers are the definition's:

* A correlation over the n - 2 kept entries needs their sums, sums of squares and dot
  products. Each is the whole-row quantity minus the two removed terms (entries i and j),
  so k * sum(uv) - sum(u) sum(v) over the kept entries (k = n - 2) is computed from row
  sums, row sums of squares, the diagonals and one product S_A S_B^T. Pearson r is
  shift-invariant per vector, so rows are centred first: the sums stay small and
  k * ss - s^2 loses less to cancellation. The cosine distance uses the same terms without
  the sums.
* The products S_A S_B^T run for blocks of rows i0..i1-1 against columns i0..n-1 (the pairs
  j > i), so memory is O(n x block) beyond the inputs and no Python loop runs over pairs.
* When one side has rank r well below n (similarity matrices of r-dimensional vectors have
  rank <= r + 1 once centred), its factors L R^T carry the products in O(n^2 r). They are
  accepted only when they reproduce the matrix to ``LOW_RANK_RTOL`` (relative), which moves
  a correlation by about that much, far below the tie tolerance.
* The decision is the definition's with its tie rule: a pair is correct when its margin
  exceeds ``tie_tol``; an undefined correlation (zero variance) makes the margin NaN, which
  compares False. Undefined pairs are refused before this runs
  (:func:`semwh.analyze.two_vs_two.check_pairs_defined`).

The tests compare these margins with a pair-by-pair reference (``tests/unit/analyze``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from semwh.analyze._checks import CHECK_BLOCK_ENTRIES, row_blocks
from semwh.errors import ConfigError, MissingDependencyError

#: Target number of entries per block array: a few MB keeps the elementwise work in cache.
_BLOCK_ENTRIES = 1 << 18

#: Default bound of the per-block work arrays on the CPU and on a CUDA device.
CPU_BLOCK_BYTES = 512 * 2**20
CUDA_BLOCK_BYTES = 8 * 2**30

#: A side whose low-rank factorisation misses more than this relative (Frobenius) part is
#: multiplied in full: the error moves correlations by about this much, far below TIE_TOL.
LOW_RANK_RTOL = 1e-13

#: Single tests look for a low-rank side from this many concepts on: below it the full
#: products cost less than the search.
_STREAM_LOW_RANK_MIN_N = 1024

#: Ranks tried in turn by the streamed factorisation; each try costs three passes of
#: O(n^2 k), so a try stops being worth it when k nears n / 8 (the full products cost n^3).
_STREAM_RANKS = (64, 512, 4096)


def block_bytes(device: str, max_block_bytes: int | None) -> int:
    """The block memory bound: the given one, else the device's default."""
    if max_block_bytes is not None:
        return int(max_block_bytes)
    return CUDA_BLOCK_BYTES if device.startswith("cuda") else CPU_BLOCK_BYTES


class BlockMargins:
    """Pair margins of (A, B) for blocks of rows, on numpy or torch arrays.

    Two ways to hold the matrices, one margin formula:

    * materialised (``stream=False``): centred copies of A and B; B can be swapped for a
      relabelled copy (the permutation nulls).
    * streaming (``stream=True``): the caller's arrays themselves (numpy memmaps included)
      and their row means; every block is centred when it is read, so memory beyond the
      inputs is O(n x block). The single tests run this way. When one side has rank well
      below n (similarity matrices of r-dimensional vectors have rank <= r + 1 once
      centred), the cross products run through its factors in O(n^2 r) instead of O(n^3).
    """

    def __init__(
        self,
        a: np.ndarray,
        distance: str,
        backend: str,
        device: str,
        *,
        stream: bool = False,
        block_entries: int = CHECK_BLOCK_ENTRIES,
    ) -> None:
        self.distance = distance
        self.n = a.shape[0]
        self.stream = stream
        # Entries per block of the streamed passes over whole rows (row statistics, factors).
        self.block_entries = block_entries
        self.torch: Any = None
        self.sqrt: Any = np.sqrt
        self.device: Any = "cpu"
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
        # Cross products through one side's low-rank factors: (side, L, W), see set_factors.
        self.factors: tuple[str, Any, Any] | None = None
        self.a, self.mu_a = self._prepare(a)
        self.sa, self.qa, self.da = self._row_stats(self.a, self.mu_a)
        # Permutation tests reuse A's per-block quantities when they fit in memory.
        self.cache_a = False
        self._a_cache: dict[tuple[int, int], tuple[Any, ...]] = {}

    def _prepare(self, m: np.ndarray) -> tuple[Any, Any]:
        """The matrix as held (centred copy, or the caller's array) and its row means."""
        if self.stream:
            mu = _row_means(m, self.block_entries) if self.distance == "pearson" else None
            if self.torch is not None:
                held = self.torch.from_numpy(_writable(m)).to(self.device)
                mu = None if mu is None else self.torch.from_numpy(mu).to(self.device)
                return held, mu
            return m, mu
        if self.distance == "pearson":
            # Pearson is shift-invariant per vector, so centring each whole row changes no
            # correlation but keeps the sums small: less cancellation in k*ss - s^2.
            m = m - m.mean(axis=1, keepdims=True)
        if self.torch is not None:
            held = self.torch.as_tensor(np.ascontiguousarray(m), dtype=self.torch.float64)
            return held.to(self.device), None
        return np.ascontiguousarray(m), None

    def _rows(self, m: Any, mu: Any, r0: int, r1: int, c0: int = 0) -> Any:
        """Rows r0..r1-1, columns c0.. of the centred matrix."""
        block = m[r0:r1, c0:]
        return block if mu is None else block - mu[r0:r1, None]

    def _cols(self, m: Any, mu: Any, r0: int, c0: int, c1: int) -> Any:
        """Rows r0.., columns c0..c1-1 of the centred matrix, transposed and contiguous."""
        block = m[r0:, c0:c1]
        if mu is not None:
            block = block - mu[r0:, None]
        return self._contiguous(block.T)

    def _row_stats(self, m: Any, mu: Any) -> tuple[Any, Any, Any]:
        if not self.stream:
            return m.sum(1), (m * m).sum(1), m.diagonal().clone() if self.torch else m.diagonal()
        parts: list[tuple[Any, Any, Any]] = []
        for r0, r1 in self._blocks():
            block = self._rows(m, mu, r0, r1)
            rows = self._arange(0, r1 - r0)
            parts.append((block.sum(1), (block * block).sum(1), block[rows, rows + r0]))
        return tuple(self._cat([part[k] for part in parts]) for k in range(3))  # type: ignore[return-value]

    def _blocks(self) -> list[tuple[int, int]]:
        return row_blocks(self.n, self.n, self.block_entries)

    def _arange(self, start: int, stop: int) -> Any:
        if self.torch is not None:
            return self.torch.arange(start, stop, device=self.device)
        return np.arange(start, stop)

    def _cat(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts) if self.torch is not None else np.concatenate(parts)

    def set_b(self, b: np.ndarray) -> None:
        """Hold B (a centred copy, or the caller's array when streaming)."""
        self._hold_b(*self._prepare(b))

    def set_b_prepared(self, b: Any) -> None:
        """Hold a B already as :meth:`set_b` holds it (a relabelled copy, for the nulls)."""
        self._hold_b(b, None)

    def _hold_b(self, b: Any, mu: Any) -> None:
        self.b, self.mu_b = b, mu
        self.sb, self.qb, self.db = self._row_stats(b, mu)
        if not self.stream:
            self.gd = (self.a * b).sum(1)
            return
        parts = []
        for r0, r1 in self._blocks():
            ab = self._rows(self.a, self.mu_a, r0, r1) * self._rows(b, mu, r0, r1)
            parts.append(ab.sum(1))
        self.gd = self._cat(parts)

    def set_factors(self, max_block_bytes: int) -> None:
        """Use one side's low-rank factors for the cross products when one is found.

        B first (word spaces are usually the low-rank side), else A. With that side
        M = L R^T and the other side O, W = O R is computed once (one streamed pass) and
        each block's products are (rows x r) by (r x n).
        """
        if self.torch is not None or self.n < _STREAM_LOW_RANK_MIN_N:
            return
        for side in ("b", "a"):
            m, mu = (self.b, self.mu_b) if side == "b" else (self.a, self.mu_a)
            found = _stream_low_rank(partial(self._rows, m, mu), self.n, self._blocks())
            if found is None:
                continue
            left, right = found
            other, other_mu = (self.a, self.mu_a) if side == "b" else (self.b, self.mu_b)
            w = np.empty((self.n, right.shape[1]))
            for r0, r1 in self._blocks():
                w[r0:r1] = self._rows(other, other_mu, r0, r1) @ right
            self.factors = (side, left, w)
            return

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

    def _side(self, m: Any, mu: Any, s: Any, q: Any, d: Any, i0: int, i1: int) -> tuple[Any, ...]:
        """One matrix's terms for rows i in i0..i1-1 and columns j in i0..n-1.

        (M[i, j], M[j, i], then for rows i and j with entries i and j removed: their sums
        (Pearson; else None) and the inverse norms 1 / sqrt(k ss - s^2), or 1 / sqrt(ss) for
        the cosine distance). ``s``, ``q``, ``d``: the matrix's row sums, row sums of squares
        and diagonal.
        """
        k = float(self.n - 2)
        mij = self._rows(m, mu, i0, i1, i0)
        # Contiguous copies: elementwise work on a transposed view walks memory column-wise.
        mji = self._cols(m, mu, i0, i0, i1)
        di, dj = d[i0:i1, None], d[None, i0:]
        ss_i = q[i0:i1, None] - di * di - mij * mij
        ss_j = q[None, i0:] - mji * mji - dj * dj
        if self.distance == "pearson":
            s_i = s[i0:i1, None] - di - mij
            s_j = s[None, i0:] - mji - dj
            ss_i = k * ss_i - s_i * s_i
            ss_j = k * ss_j - s_j * s_j
        else:
            s_i = s_j = None
        return mij, mji, s_i, s_j, 1.0 / self.sqrt(ss_i), 1.0 / self.sqrt(ss_j)

    def a_side(self, i0: int, i1: int) -> tuple[Any, ...]:
        """A's terms of a block (see :meth:`_side`); they do not change when B is relabelled."""
        key = (i0, i1)
        cached = self._a_cache.get(key)
        if cached is not None:
            return cached
        out = self._side(self.a, self.mu_a, self.sa, self.qa, self.da, i0, i1)
        if self.cache_a:
            self._a_cache[key] = out
        return out

    def drop_a_cache(self) -> None:
        """Stop keeping A's block terms (the fused null keeps its own)."""
        self.cache_a = False
        self._a_cache.clear()

    def _cross(self, i0: int, i1: int, max_block_bytes: int) -> tuple[Any, Any]:
        """Whole-row dot products A_i . B_j and B_i . A_j for rows i0..i1-1, columns i0..n-1."""
        a, b = self.a, self.b
        if self.factors is not None or not self.stream:
            return cross_products(a, b, self.factors, i0, i1)
        a_rows = self._rows(a, self.mu_a, i0, i1)
        b_rows = self._rows(b, self.mu_b, i0, i1)
        if self.torch is not None:
            c_ij = self.torch.empty((i1 - i0, self.n - i0), dtype=a.dtype, device=self.device)
        else:
            c_ij = np.empty((i1 - i0, self.n - i0))
        c_ji = c_ij.clone() if self.torch is not None else np.empty_like(c_ij)
        # Columns in chunks of rows of the other matrix, centred as they are read.
        chunk = max(i1 - i0, max_block_bytes // (16 * 8 * max(self.n, 1)))
        for j0 in range(i0, self.n, chunk):
            j1 = min(j0 + chunk, self.n)
            c_ij[:, j0 - i0 : j1 - i0] = a_rows @ self._rows(b, self.mu_b, j0, j1).T
            c_ji[:, j0 - i0 : j1 - i0] = b_rows @ self._rows(a, self.mu_a, j0, j1).T
        return c_ij, c_ji

    def margins(self, i0: int, i1: int, max_block_bytes: int = CPU_BLOCK_BYTES) -> tuple[Any, Any]:
        """Margins for rows i0..i1-1 and columns i0..n-1, plus the mask of pairs j > i.

        margin = (d(a_i,b_j) + d(a_j,b_i)) - (d(a_i,b_i) + d(a_j,b_j))
               = r(a_i,b_i) + r(a_j,b_j) - r(a_i,b_j) - r(a_j,b_i).
        """
        n = self.n
        k = float(n - 2)
        aij, aji, s_ai, s_aj, inv_ai, inv_aj = self.a_side(i0, i1)
        bij, bji, s_bi, s_bj, inv_bi, inv_bj = self._side(
            self.b, self.mu_b, self.sb, self.qb, self.db, i0, i1
        )
        dbi, dbj = self.db[i0:i1, None], self.db[None, i0:]
        dai, daj = self.da[i0:i1, None], self.da[None, i0:]
        # Cross products: whole-row dot product minus the products at i and j.
        c_ii = (self.gd[i0:i1] - self.da[i0:i1] * self.db[i0:i1])[:, None] - aij * bij
        c_jj = (self.gd[i0:] - self.da[i0:] * self.db[i0:])[None, :] - aji * bji
        c_ij, c_ji = self._cross(i0, i1, max_block_bytes)
        c_ij -= dai * bji
        c_ij -= aij * dbj
        c_ji -= aji * dbi
        c_ji -= daj * bij
        if self.distance == "pearson":
            c_ii = k * c_ii - s_ai * s_bi
            c_jj = k * c_jj - s_aj * s_bj
            c_ij *= k
            c_ij -= s_ai * s_bj
            c_ji *= k
            c_ji -= s_aj * s_bi
        # r(u, v) = c * inv_u * inv_v; an undefined one (zero variance) makes the margin NaN,
        # which compares False: not correct.
        margin = inv_ai * (c_ii * inv_bi - c_ij * inv_bj)
        margin += inv_aj * (c_jj * inv_bj - c_ji * inv_bi)
        return margin, self._arange(i0, n)[None, :] > self._arange(i0, i1)[:, None]

    def _all_margins(self, max_block_bytes: int) -> Iterator[tuple[int, int, Any, Any]]:
        """(i0, i1, margins, mask) of every block of rows, top to bottom."""
        step = self.block_rows(max_block_bytes)
        for i0 in range(0, self.n - 1, step):
            i1 = min(i0 + step, self.n)
            yield (i0, i1, *self.margins(i0, i1, max_block_bytes))

    def count_correct(self, tie_tol: float, max_block_bytes: int) -> int:
        """Number of correct pairs: margin above ``tie_tol`` (NaN is not correct)."""
        total = 0
        for _, _, margin, mask in self._all_margins(max_block_bytes):
            total += int(((margin > tie_tol) & mask).sum())
        return total

    def pairs(self, tie_tol: float, max_block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
        """n x n correctness and margins, [i, j] for i < j (NaN margins elsewhere)."""
        n = self.n
        full = np.full((n, n), np.nan)
        for i0, i1, margin, mask in self._all_margins(max_block_bytes):
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


def cross_products(
    a: Any, b: Any, factors: tuple[str, Any, Any] | None, i0: int, i1: int
) -> tuple[Any, Any]:
    """Whole-row dot products A_i . B_j and B_i . A_j for rows i0..i1-1, columns i0..n-1.

    ``factors``: None (the products of ``a`` and ``b`` as held), or (side, L, W) with that
    side M = L R^T and W = (the other side) R, so each product is (rows x r) by (r x n).
    """
    if factors is None:
        return a[i0:i1] @ b[i0:].T, b[i0:i1] @ a[i0:].T
    side, left, w = factors
    if side == "b":
        return w[i0:i1] @ left[i0:].T, left[i0:i1] @ w[i0:].T
    return left[i0:i1] @ w[i0:].T, w[i0:i1] @ left[i0:].T


def _row_means(m: np.ndarray, block_entries: int) -> np.ndarray:
    """Row means of an n x n array, a block of rows at a time."""
    blocks = row_blocks(m.shape[0], m.shape[1], block_entries)
    return np.concatenate([m[r0:r1].mean(axis=1) for r0, r1 in blocks])


def _writable(m: np.ndarray) -> np.ndarray:
    """The array itself when torch can share it, else a copy (torch wants writable memory)."""
    return m if m.flags.writeable and m.flags.c_contiguous else np.ascontiguousarray(m).copy()


def projected_svd(
    rows: Callable[[int, int], Any], n: int, blocks: list[tuple[int, int]], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Q, U, s, V^T): Q an orthonormal basis of M Omega and U s V^T the SVD of Q^T M.

    ``rows(r0, r1)`` returns rows r0..r1-1 of the n x n matrix M, read once per pass over
    ``blocks``. Omega is n x ``size`` from a fixed seed (0), so factors, and the results
    computed with them, do not depend on the caller's seed. M ~ (Q U) diag(s) V^T.
    """
    omega = np.random.default_rng(0).standard_normal((n, size))
    y = np.empty((n, size))
    for r0, r1 in blocks:
        y[r0:r1] = rows(r0, r1) @ omega
    q, _ = np.linalg.qr(y)
    del y
    qtm = np.zeros((size, n))
    for r0, r1 in blocks:
        qtm += q[r0:r1].T @ rows(r0, r1)
    u, s, vt = np.linalg.svd(qtm, full_matrices=False)
    return q, u, s, vt


def svd_rank(s: np.ndarray) -> int:
    """Numerical rank of singular values ``s`` (descending, s[0] > 0): at least 1."""
    return max(1, int(np.count_nonzero(s > s[0] * 1e-15)))


def svd_factors(
    q: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """(L, R), n x r each, with M ~ L R^T, from :func:`projected_svd`'s output."""
    return np.ascontiguousarray((q @ u[:, :r]) * s[:r]), np.ascontiguousarray(vt[:r].T)


def _stream_low_rank(
    rows: Callable[[int, int], Any], n: int, blocks: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(L, R) with M = L R^T to LOW_RANK_RTOL, read a block of rows at a time; else None.

    ``rows(r0, r1)`` returns rows r0..r1-1 of M. Projections of ``_STREAM_RANKS`` columns are
    tried in turn; a factorisation is accepted only when its rank is below the projection's
    size and a last pass shows it reproduces M to LOW_RANK_RTOL (relative, Frobenius).
    """
    for size in _STREAM_RANKS:
        if size * 8 > n:
            return None
        q, u, s, vt = projected_svd(rows, n, blocks, size)
        if not s[0] > 0:
            return None
        r = svd_rank(s)
        if r >= size:
            continue
        left, right = svd_factors(q, u, s, vt, r)
        scale = residual = 0.0
        for r0, r1 in blocks:
            block = rows(r0, r1)
            scale += float(np.einsum("ij,ij->", block, block))
            diff = block - left[r0:r1] @ right.T
            residual += float(np.einsum("ij,ij->", diff, diff))
        if residual <= (LOW_RANK_RTOL**2) * scale:
            return left, right
    return None
