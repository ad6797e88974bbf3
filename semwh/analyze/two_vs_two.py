"""The 2 vs 2 test between two similarity matrices (DESIGN "Method definitions").

For every pair i < j, a_i is row i of S_A with entries i and j removed (likewise a_j, b_i,
b_j); with d(u, v) = 1 - Pearson(u, v) (option: cosine distance) the pair is correct iff
d(a_i, b_i) + d(a_j, b_j) < d(a_i, b_j) + d(a_j, b_i). Accuracy is the mean over all pairs.

Fast path: a Pearson correlation over the n - 2 kept entries follows from whole-row sums,
sums of squares and dot products minus the two removed terms, so after one matrix product
S_A S_B^T every pair costs O(1) and no Python loop runs over pairs. Pairs are processed in
blocks of rows. The observed statistic streams both matrices (numpy memmaps included): rows
are centred as they are read, so memory beyond the inputs is O(n x block); when one side has
rank r well below n its factors carry the products in O(n^2 r) (see :class:`_Kernel`).

Permutation null (numpy backend): with the margin written as X / |b_i| + Y / |b_j|, X and Y
linear in the relabelled B, everything that depends on A alone is computed once and each
permutation is one gather, the products A B'^T (O(n^2 r) when either matrix has rank r well
below n, as similarity matrices of r-dimensional vectors do) and one fused numexpr pass per
block. It applies the same tie rule and makes the same decisions as the kernel above.

Ties: the two sides of the inequality come from different formulas in the fast path and in
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
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numexpr
import numpy as np
from threadpoolctl import threadpool_limits

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
    permutation_stream,
)
from semwh.analyze.similarity import CONSTANT_RTOL
from semwh.errors import ConfigError, DegenerateInputError, MissingDependencyError

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
        self.b, self.mu_b = self._prepare(b)
        self.sb, self.qb, self.db = self._row_stats(self.b, self.mu_b)
        if not self.stream:
            self.gd = (self.a * self.b).sum(1)
            return
        parts = []
        for r0, r1 in self._blocks():
            ab = self._rows(self.a, self.mu_a, r0, r1) * self._rows(self.b, self.mu_b, r0, r1)
            parts.append(ab.sum(1))
        self.gd = self._cat(parts)

    def set_b_prepared(self, b: Any) -> None:
        self.b, self.mu_b = b, None
        self.sb, self.qb, self.db = self._row_stats(b, None)
        self.gd = (self.a * b).sum(1)

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
            found = _stream_low_rank(
                lambda r0, r1, m=m, mu=mu: self._rows(m, mu, r0, r1), self.n, self._blocks()
            )
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

    def _a_side(self, i0: int, i1: int) -> tuple[Any, ...]:
        """Quantities of the A rows of a block; they do not change under B's relabelling."""
        key = (i0, i1)
        cached = self._a_cache.get(key)
        if cached is not None:
            return cached
        k = float(self.n - 2)
        aij = self._rows(self.a, self.mu_a, i0, i1, i0)
        # Contiguous copies: elementwise work on a transposed view walks memory column-wise.
        aji = self._cols(self.a, self.mu_a, i0, i0, i1)
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

    def _cross(self, i0: int, i1: int, max_block_bytes: int) -> tuple[Any, Any]:
        """Whole-row dot products A_i . B_j and B_i . A_j for rows i0..i1-1, columns i0..n-1."""
        if self.factors is not None:
            side, left, w = self.factors
            if side == "b":
                return w[i0:i1] @ left[i0:].T, left[i0:i1] @ w[i0:].T
            return left[i0:i1] @ w[i0:].T, w[i0:i1] @ left[i0:].T
        a, b = self.a, self.b
        if not self.stream:
            return a[i0:i1] @ b[i0:].T, b[i0:i1] @ a[i0:].T
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

    def margins(self, i0: int, i1: int, max_block_bytes: int = 512 * 2**20) -> tuple[Any, Any]:
        """Margins for rows i0..i1-1 and columns i0..n-1, plus the mask of pairs j > i.

        margin = (d(a_i,b_j) + d(a_j,b_i)) - (d(a_i,b_i) + d(a_j,b_j))
               = r(a_i,b_i) + r(a_j,b_j) - r(a_i,b_j) - r(a_j,b_i).
        """
        n = self.n
        k = float(n - 2)
        aij, aji, s_ai, s_aj, inv_ai, inv_aj = self._a_side(i0, i1)
        bij = self._rows(self.b, self.mu_b, i0, i1, i0)
        bji = self._cols(self.b, self.mu_b, i0, i0, i1)
        dbi, dbj = self.db[i0:i1, None], self.db[None, i0:]
        dai, daj = self.da[i0:i1, None], self.da[None, i0:]
        ss_bi = self.qb[i0:i1, None] - dbi * dbi - bij * bij
        ss_bj = self.qb[None, i0:] - bji * bji - dbj * dbj
        # Cross products: whole-row dot product minus the products at i and j.
        c_ii = (self.gd[i0:i1] - self.da[i0:i1] * self.db[i0:i1])[:, None] - aij * bij
        c_jj = (self.gd[i0:] - self.da[i0:] * self.db[i0:])[None, :] - aji * bji
        c_ij, c_ji = self._cross(i0, i1, max_block_bytes)
        c_ij -= dai * bji
        c_ij -= aij * dbj
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
            margin, mask = self.margins(i0, min(i0 + step, self.n), max_block_bytes)
            total += int(((margin > tie_tol) & mask).sum())
        return total

    def pairs(self, tie_tol: float, max_block_bytes: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.n
        full = np.full((n, n), np.nan)
        step = self.block_rows(max_block_bytes)
        for i0 in range(0, n - 1, step):
            i1 = min(i0 + step, n)
            margin, mask = self.margins(i0, i1, max_block_bytes)
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


def _row_means(m: np.ndarray, block_entries: int) -> np.ndarray:
    """Row means of an n x n array, a block of rows at a time."""
    blocks = row_blocks(m.shape[0], m.shape[1], block_entries)
    return np.concatenate([m[r0:r1].mean(axis=1) for r0, r1 in blocks])


def _block_entries(max_block_bytes: int) -> int:
    """Entries per block of the whole-row passes under a block memory bound."""
    return min(CHECK_BLOCK_ENTRIES, max(1, max_block_bytes // (8 * 8)))


def _writable(m: np.ndarray) -> np.ndarray:
    """The array itself when torch can share it, else a copy (torch wants writable memory)."""
    return m if m.flags.writeable and m.flags.c_contiguous else np.ascontiguousarray(m).copy()


#: Single tests look for a low-rank side from this many concepts on: below it the full
#: products cost less than the search.
_STREAM_LOW_RANK_MIN_N = 1024

#: Ranks tried in turn by the streamed factorisation; each try costs three passes of
#: O(n^2 k), so a try stops being worth it when k nears n / 8 (the full products cost n^3).
_STREAM_RANKS = (64, 512, 4096)


def _stream_low_rank(
    rows: Any, n: int, blocks: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(L, R) with M = L R^T to _LOW_RANK_RTOL, read a block of rows at a time; else None.

    ``rows(r0, r1)`` returns rows r0..r1-1 of M. The range comes from a fixed random
    projection (seed 0: results do not depend on the caller's seed); the factorisation is
    accepted only when its rank is below the projection's size and a last pass shows it
    reproduces M to _LOW_RANK_RTOL (relative, Frobenius), as :func:`_low_rank` does.
    """
    for size in _STREAM_RANKS:
        if size * 8 > n:
            return None
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
        if not s[0] > 0:
            return None
        r = max(1, int(np.count_nonzero(s > s[0] * 1e-15)))
        if r >= size:
            continue
        left = np.ascontiguousarray((q @ u[:, :r]) * s[:r])
        right = np.ascontiguousarray(vt[:r].T)
        scale = residual = 0.0
        for r0, r1 in blocks:
            block = rows(r0, r1)
            scale += float(np.einsum("ij,ij->", block, block))
            diff = block - left[r0:r1] @ right.T
            residual += float(np.einsum("ij,ij->", diff, diff))
        if residual <= (_LOW_RANK_RTOL**2) * scale:
            return left, right
    return None


#: Block margin counts evaluated in one numexpr pass (see :class:`_FusedNull`). With the
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

#: A side whose low-rank factorisation misses more than this relative (Frobenius) part is
#: multiplied in full: the error moves correlations by about this much, far below TIE_TOL.
_LOW_RANK_RTOL = 1e-13


def _low_rank(m: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(L, R) with m = L R^T to _LOW_RANK_RTOL and L, R n x r, r <= max_rank; else None.

    Similarity matrices of d-dimensional vectors have rank at most d + 1 (after centring):
    the permutation products then cost O(n^2 d) instead of O(n^3). A fixed random projection
    finds the range; the seed is constant, so results do not depend on the caller's seed.
    """
    n = m.shape[0]
    if max_rank < 1:
        return None
    omega = np.random.default_rng(0).standard_normal((n, max_rank))
    q, _ = np.linalg.qr(m @ omega)
    u, s, vt = np.linalg.svd(q.T @ m, full_matrices=False)
    scale = float(np.linalg.norm(m))
    if not scale > 0:
        return None
    r = max(1, int(np.count_nonzero(s > s[0] * 1e-15)))
    left = (q @ u[:, :r]) * s[:r]
    right = np.ascontiguousarray(vt[:r].T)
    if not np.linalg.norm(m - left @ right.T) <= _LOW_RANK_RTOL * scale:
        return None
    return np.ascontiguousarray(left), right


class _FusedNull:
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
        kernel: _Kernel,
        b_raw: np.ndarray,
        tie_tol: float,
        max_block_bytes: int,
    ) -> None:
        n = kernel.n
        self.n = n
        self.kernel = kernel
        # The fused terms replace the kernel's own A cache.
        kernel.cache_a = False
        kernel._a_cache.clear()
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
        aij, aji, s_ai, s_aj, iai, iaj = self.kernel._a_side(i0, i1)
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
        if self.a_factors is not None:
            left, right = self.a_factors
            w = bc @ right
            c1_of = lambda i0, i1: left[i0:i1] @ w[i0:].T  # noqa: E731
            c2_of = lambda i0, i1: w[i0:i1] @ left[i0:].T  # noqa: E731
        elif self.b_factors is not None:
            lb, rb = self.b_factors
            lb, rb = lb[perm], rb[perm]
            w = a @ rb
            c1_of = lambda i0, i1: w[i0:i1] @ lb[i0:].T  # noqa: E731
            c2_of = lambda i0, i1: lb[i0:i1] @ w[i0:].T  # noqa: E731
        else:
            c1_of = lambda i0, i1: a[i0:i1] @ bc[i0:].T  # noqa: E731
            c2_of = lambda i0, i1: bc[i0:i1] @ a[i0:].T  # noqa: E731
        # Row i's full dot product with its relabelled B row is the diagonal of A B'^T; the
        # blocks run bottom-up, so every column's value is known before it is needed.
        g = np.empty(n)
        total = 0
        for i0, i1 in self.blocks:
            c1 = c1_of(i0, i1)
            c2 = c2_of(i0, i1)
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
        observed = _Kernel(a, distance, backend, device, stream=True, block_entries=entries)
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
        with _blas_limit(backend, permuting), np.errstate(invalid="ignore", divide="ignore"):
            kernel, fused = _null_kernel(a, b, distance, backend, device, True, max_block_bytes)
            # The block 0..N of two_vs_two_null: blocks of it concatenate to this null exactly.
            counts = _null(
                kernel, a, b, fused, rng, 0, n_permutations, tie_tol, max_block_bytes, n_jobs
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
    permuting = stop > start
    with _blas_limit(backend, permuting), np.errstate(invalid="ignore", divide="ignore"):
        kernel, fused = _null_kernel(a, b, distance, backend, device, permuting, max_block_bytes)
        counts = _null(kernel, a, b, fused, rng, start, stop, tie_tol, max_block_bytes, n_jobs)
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
        order = _extremes(mags)
        every = order[:, -1] == 0
        one = ~every & (order[:, -2] == 0)
        return every, one, np.argmax(mags, axis=1)
    order = _extremes(off)
    tol = CONSTANT_RTOL * np.maximum(np.abs(off).max(axis=1), 1e-300)
    every = order[:, -1] - order[:, 0] <= tol
    without_max = order[:, -2] - order[:, 0] <= tol
    without_min = order[:, -1] - order[:, 1] <= tol
    one = ~every & (without_max | without_min)
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
        order = extremes(mags)
        every = order[:, -1] == 0
        one = ~every & (order[:, -2] == 0)
        drop = mags.argmax(dim=1)
    else:
        order = extremes(off)
        tol = CONSTANT_RTOL * off.abs().max(dim=1).values.clamp(min=1e-300)
        every = order[:, -1] - order[:, 0] <= tol
        without_max = order[:, -2] - order[:, 0] <= tol
        without_min = order[:, -1] - order[:, 1] <= tol
        one = ~every & (without_max | without_min)
        drop = torch.where(without_max, off.argmax(dim=1), off.argmin(dim=1))
    return every.cpu().numpy(), one.cpu().numpy(), drop.cpu().numpy()


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


#: Default bound of the per-block work arrays on the CPU and on a CUDA device.
CPU_BLOCK_BYTES = 512 * 2**20
CUDA_BLOCK_BYTES = 8 * 2**30


def block_bytes(device: str, max_block_bytes: int | None) -> int:
    """The block memory bound: the given one, else the device's default."""
    if max_block_bytes is not None:
        return int(max_block_bytes)
    return CUDA_BLOCK_BYTES if device.startswith("cuda") else CPU_BLOCK_BYTES


def _check_options(distance: str, backend: str, tie_tol: float) -> None:
    if distance not in DISTANCES:
        raise ConfigError(f"unknown 2 vs 2 distance {distance!r} (choose {', '.join(DISTANCES)})")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r} (choose {', '.join(BACKENDS)})")
    if not tie_tol >= 0:
        raise ConfigError(f"tie_tol must be >= 0, got {tie_tol!r}")


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
) -> tuple[_Kernel, bool]:
    """The kernel of (A, B) and whether the null takes the fused path.

    The fused null needs one exactly symmetric matrix (similarity matrices are) and the
    numpy backend; otherwise the kernel relabels B itself and keeps A's blocks when they fit.
    """
    n = a.shape[0]
    if not permuting:
        # Nothing to relabel: a streaming kernel holds no copies of the matrices.
        kernel = _Kernel(a, distance, backend, device, stream=True)
        kernel.set_b(b)
        return kernel, False
    fused = backend == "numpy" and (np.array_equal(b, b.T) or np.array_equal(a, a.T))
    kernel = _Kernel(a, distance, backend, device)
    kernel.set_b(b)
    kernel.cache_a = not fused and permuting and 3 * n * n * 8 <= max_block_bytes
    return kernel, fused


def _null(
    kernel: _Kernel,
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

    `fused`: use :class:`_FusedNull` (numpy backend, B or A exactly symmetric); else the
    kernel's own margins, relabelled B by relabelled B.
    """
    counts = np.empty(stop - start, dtype=np.float64)
    if stop == start:
        return counts
    batches = list(permutation_stream(rng, kernel.n, start, stop, 8))
    starts = np.cumsum([0] + [len(batch) for batch in batches])
    if fused:
        count = _fused_null(kernel, a, b, tie_tol, max_block_bytes)

        def run(index: int) -> None:
            with np.errstate(invalid="ignore", divide="ignore"):
                for offset, perm in enumerate(batches[index]):
                    counts[starts[index] + offset] = count(perm)

    else:
        b_prepared = kernel.b

        def run(index: int) -> None:
            # Each worker relabels B in its own shallow copy; A's cached blocks are shared.
            worker = copy.copy(kernel)
            # errstate is per thread: undefined correlations (NaN) are expected, not warnings.
            with np.errstate(invalid="ignore", divide="ignore"):
                for offset, perm in enumerate(batches[index]):
                    worker.set_b_prepared(worker.permuted_b(b_prepared, perm))
                    counts[starts[index] + offset] = worker.count_correct(tie_tol, max_block_bytes)

    if kernel.torch is not None:
        for index in range(len(batches)):
            run(index)
        return counts
    jobs = n_jobs or min(8, os.cpu_count() or 1)
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


def _fused_null(
    kernel: _Kernel, a: np.ndarray, b: np.ndarray, tie_tol: float, max_block_bytes: int
) -> Any:
    """A function perm -> count for the fused path; needs B (or else A) exactly symmetric.

    The 2 vs 2 margin is symmetric in A and B, and relabelling both by the inverse of p
    maps (A, B[p][:, p]) to (A[q][:, q], B): with only A symmetric, B is held fixed and A is
    relabelled by the inverse permutation instead.
    """
    if np.array_equal(b, b.T):
        fused = _FusedNull(kernel, b, tie_tol, max_block_bytes)
        return fused.count
    fixed = _Kernel(b, kernel.distance, "numpy", "cpu")
    fixed.set_b(a)
    fused = _FusedNull(fixed, a, tie_tol, max_block_bytes)
    return lambda perm: fused.count(np.argsort(perm))
