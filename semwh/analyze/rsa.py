"""Representational similarity analysis: correlation of two similarity matrices.

RSA = Spearman correlation of the upper triangles (diagonal excluded) of S_A and S_B
(options: Pearson, Kendall tau-a), with a permutation (Mantel) test that relabels the concepts
of B, rows and columns together (DESIGN "Method definitions").

The observed statistic reads the matrices one row at a time (numpy memmaps included) and sums
exactly or in a fixed order, so it has the same bits whichever array holds the inputs:

* Spearman: the triangle's ranks (ties averaged) are kept as integers, twice the rank minus
  (m + 1) for m = n(n-1)/2 entries, and the correlation's sums are exact integer sums. Memory
  beyond the inputs: one triangle as float64 and its sort order while ranking (16 m bytes),
  then both rank vectors (4 m bytes each while m < 2**30).
* Pearson: per-row sums of the triangle, added with ``math.fsum``; memory O(n).
* Kendall tau-a sorts pairs of triangle entries: the whole triangles are held.

The permutation null relabels a full n x n table per permutation and is meant for the sizes
permutation tests run at (a few thousand concepts). The compiled path
(:mod:`semwh.analyze.kernels`) gathers the upper triangle only, a block of permutations per
pass; its values equal the numpy path's to about 1e-15.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from semwh.analyze import kernels
from semwh.analyze._checks import as_similarity_pair
from semwh.analyze.permutation import (
    check_block,
    check_n_permutations,
    make_rng,
    permutation_p_value,
    permutation_stream,
)
from semwh.errors import ConfigError, DegenerateInputError

RSA_METHODS = ("spearman", "pearson", "kendall")


@dataclass(frozen=True)
class RSAResult:
    """Outcome of :func:`rsa`.

    Attributes:
        rho: correlation of the two upper triangles (Spearman rho, Pearson r or tau-a).
        p_value: permutation p-value, (1 + #{null >= rho}) / (1 + N); None when N = 0.
        null: the N permuted statistics, in the order the permutations were drawn.
        n_concepts: number of concepts n (the triangles hold n(n-1)/2 entries).
        n_permutations: N.
        seed: seed of the permutations (None when a Generator was passed in).
        method: "spearman", "pearson" or "kendall" (Kendall tau-a).
    """

    rho: float
    p_value: float | None
    null: np.ndarray = field(repr=False)
    n_concepts: int
    n_permutations: int
    seed: int | None
    method: str


def upper_triangle(sim: np.ndarray) -> np.ndarray:
    """Entries above the diagonal of a square matrix, row by row."""
    n = sim.shape[0]
    return sim[np.triu_indices(n, 1)]


def kendall_tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-a: (concordant - discordant) / (m(m-1)/2), ties count as neither.

    Uses scipy's O(m log m) tau-b and undoes its tie correction, which is exact because
    tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) with n1, n2 the pairs tied in x, in y.
    """
    m = x.size
    n0 = m * (m - 1) // 2
    n1 = _tied_pairs(x)
    n2 = _tied_pairs(y)
    if n1 == n0 or n2 == n0:
        return float("nan")
    tau_b = stats.kendalltau(x, y, variant="b").statistic
    return float(tau_b * np.sqrt(float(n0 - n1) * float(n0 - n2)) / n0)


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def rsa(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    method: str = "spearman",
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    batch_size: int = 32,
    n_jobs: int | None = None,
    backend: str = "numpy",
    device: str = "cpu",
) -> RSAResult:
    """Correlate the upper triangles of two similarity matrices over the same concepts.

    The permutation test relabels B's concepts (rows and columns together). For Spearman and
    Pearson the triangle is ranked (or centred) once: a relabelled matrix's triangle holds the
    same entries in another order, so its ranks are the original ranks permuted, mean and
    norm are unchanged, and each null value is one gather plus one dot product. The null is
    the block 0..N of :func:`rsa_null`, so nulls computed in blocks concatenate to it exactly.

    Args:
        sim_a: n x n similarity matrix of space A (e.g. from :func:`similarity_matrix`).
        sim_b: n x n similarity matrix of space B, same concepts in the same order.
        method: "spearman" (default), "pearson" or "kendall" (tau-a; its permutation test
            re-sorts every permutation and is much slower).
        n_permutations: number N of relabellings for the p-value; 0 skips the test.
        seed: integer seed (recorded) or a numpy Generator (recorded as None).
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.
        batch_size: permutations gathered per task.
        n_jobs: threads for the permutations (default: number of CPUs, at most 8).
        backend: "numpy" (default) or "torch": the Spearman and Pearson null relabels on
            ``device`` in float64 (same values up to the order of the sums).
        device: "cpu", or "cuda"/"cuda:N" with the torch backend.

    Returns:
        RSAResult.

    Raises:
        ConfigError: unknown method or bad permutation settings.
        InputError: matrices of different or non-square shape.
        DegenerateInputError: fewer than 4 concepts, NaN/inf, or a constant upper triangle.
    """
    _check_method(method)
    check_device(backend, device)
    n_permutations = check_n_permutations(n_permutations)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    rng, recorded_seed = make_rng(seed)
    rho = triangle_correlation(a, b, method, space_a, space_b)
    null = np.empty(0, dtype=np.float64)
    if n_permutations:
        mantel = _Mantel(a, b, method, space_a, space_b)
        null = mantel.null(rng, 0, n_permutations, batch_size, n_jobs, backend, device)
    return RSAResult(
        rho=rho,
        p_value=rsa_p_value(rho, null) if n_permutations else None,
        null=null,
        n_concepts=a.shape[0],
        n_permutations=n_permutations,
        seed=recorded_seed,
        method=method,
    )


def rsa_null(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    n_permutations: int,
    start: int = 0,
    stop: int | None = None,
    method: str = "spearman",
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    batch_size: int = 32,
    n_jobs: int | None = None,
    backend: str = "numpy",
    device: str = "cpu",
) -> np.ndarray:
    """The null statistics of permutations ``start..stop-1`` of an RSA permutation test.

    The permutations are those :func:`rsa` draws for the same ``seed`` (the first ``start``
    are drawn and dropped), so blocks covering 0..N, concatenated in order, equal
    ``rsa(..., n_permutations=N, seed=seed).null`` bit for bit; :func:`rsa_p_value` of the
    observed rho and that null is its p-value.

    Args:
        sim_a: n x n similarity matrix of space A.
        sim_b: n x n similarity matrix of space B, same concepts in the same order.
        n_permutations: N, the size of the whole test the block belongs to.
        start: first permutation of the block (0-based).
        stop: one past its last permutation (default N).
        method: "spearman" (default), "pearson" or "kendall".
        seed: integer seed of the test, or a Generator whose current state starts the stream.
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.
        batch_size: permutations gathered per task.
        n_jobs: threads for the permutations (default: number of CPUs, at most 8).
        backend: "numpy" (default) or "torch".
        device: "cpu", or "cuda"/"cuda:N" with the torch backend.

    Returns:
        float64 array of stop - start permuted statistics, in stream order.

    Raises:
        ConfigError: unknown method, bad permutation settings, or a block outside 0..N.
        InputError: matrices of different or non-square shape.
        DegenerateInputError: fewer than 4 concepts, NaN/inf, or a constant upper triangle.
    """
    _check_method(method)
    check_device(backend, device)
    start, stop = check_block(start, stop, n_permutations)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    rng, _ = make_rng(seed)
    mantel = _Mantel(a, b, method, space_a, space_b)
    return mantel.null(rng, start, stop, batch_size, n_jobs, backend, device)


def rsa_p_value(rho: float, null: np.ndarray) -> float:
    """Permutation p-value of an RSA statistic: (1 + #{null >= rho}) / (1 + N).

    Null values within :data:`~semwh.analyze.permutation.STAT_TOL` of rho count as ">=".
    """
    return permutation_p_value(rho, null)


#: Entries per chunk of the exact integer sums: |x| < 2**32 and chunks of 2**14 keep every
#: int64 partial sum of the split products below 2**63.
_EXACT_CHUNK = 1 << 14


def triangle_correlation(
    a: np.ndarray, b: np.ndarray, method: str, space_a: str = "A", space_b: str = "B"
) -> float:
    """The RSA statistic of two validated n x n matrices, reading them row by row.

    Raises:
        DegenerateInputError: A constant upper triangle.
    """
    n = a.shape[0]
    m = n * (n - 1) // 2
    if method == "kendall":
        u, v = upper_triangle(a), upper_triangle(b)
        for vec, space in ((u, space_a), (v, space_b)):
            if np.ptp(vec) == 0:
                _constant(vec.size, space)
        return kendall_tau_a(u, v)
    if method == "spearman":
        ranks = []
        for mat, space in ((a, space_a), (b, space_b)):
            ranks.append(centred_ranks2(_triangle(mat)))
            if not ranks[-1].any():
                _constant(m, space)
        num = _exact_dot(ranks[0], ranks[1])
        den = _exact_dot(ranks[0], ranks[0]) * _exact_dot(ranks[1], ranks[1])
        return float(num / math.sqrt(den))
    sums = []
    for mat, space in ((a, space_a), (b, space_b)):
        low, high = math.inf, -math.inf
        row_sums = np.empty(n)
        for i in range(n):
            row = mat[i, i + 1 :]
            row_sums[i] = row.sum() if row.size else 0.0
            if row.size:
                low, high = min(low, float(row.min())), max(high, float(row.max()))
        if low == high:
            _constant(m, space)
        sums.append(math.fsum(row_sums) / m)
    mean_a, mean_b = sums
    cross, sq_a, sq_b = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n - 1):
        du = a[i, i + 1 :] - mean_a
        dv = b[i, i + 1 :] - mean_b
        cross[i], sq_a[i], sq_b[i] = (du * dv).sum(), (du * du).sum(), (dv * dv).sum()
    return float(math.fsum(cross) / math.sqrt(math.fsum(sq_a) * math.fsum(sq_b)))


def _constant(size: int, space: str) -> None:
    raise DegenerateInputError(
        f"space {space!r}: all {size} pairwise similarities are equal, so the "
        "RSA correlation is undefined; check that the space's vectors differ"
    )


def _triangle(m: np.ndarray) -> np.ndarray:
    """The upper triangle (diagonal excluded) of an n x n array, read row by row."""
    n = m.shape[0]
    out = np.empty(n * (n - 1) // 2)
    at = 0
    for i in range(n - 1):
        out[at : at + n - 1 - i] = m[i, i + 1 :]
        at += n - 1 - i
    return out


def centred_ranks2(u: np.ndarray) -> np.ndarray:
    """2 x rank - (m + 1) of each entry of ``u`` (ranks 1..m, ties averaged), as integers.

    Twice an average rank is an integer, so the result is exact; it is the centred rank
    vector of scipy's ``rankdata(u)``, doubled. int32 while m < 2**30, else int64.
    """
    m = u.size
    order = np.argsort(u)
    out = np.empty(m, dtype=np.int32 if m < 2**30 else np.int64)
    chunk = 1 << 20
    for k0 in range(0, m, chunk):
        k1 = min(k0 + chunk, m)
        # Without ties the entry at sorted position k has rank k + 1.
        out[order[k0:k1]] = np.arange(2 * k0 + 1 - m, 2 * k1 + 1 - m, 2, dtype=np.int64)
    # Sorted positions k whose value equals the next one's: runs of them are tie groups.
    tied = []
    for k0 in range(0, m - 1, chunk):
        k1 = min(k0 + chunk, m - 1)
        vals = u[order[k0 : k1 + 1]]
        tied.append(k0 + np.flatnonzero(vals[1:] == vals[:-1]))
    ties = np.concatenate(tied) if tied else np.empty(0, dtype=np.int64)
    if ties.size:
        breaks = np.flatnonzero(np.diff(ties) != 1)
        first = ties[np.r_[0, breaks + 1]]
        last = ties[np.r_[breaks, ties.size - 1]] + 1
        lengths = last - first + 1
        # Positions first..last share the average rank (first + last + 2) / 2.
        positions = np.repeat(first - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(
            lengths.sum()
        )
        out[order[positions]] = np.repeat(first + last + 1 - m, lengths)
    return out


def _exact_dot(x: np.ndarray, y: np.ndarray) -> int:
    """sum(x * y) of two integer vectors (|values| < 2**32), exactly, as a Python int."""
    total = 0
    for k0 in range(0, x.size, _EXACT_CHUNK):
        xs = x[k0 : k0 + _EXACT_CHUNK].astype(np.int64)
        ys = y[k0 : k0 + _EXACT_CHUNK].astype(np.int64)
        high, low = xs >> 16, xs & 0xFFFF
        total += (int(np.dot(high, ys)) << 16) + int(np.dot(low, ys))
    return total


def _check_method(method: str) -> None:
    if method not in RSA_METHODS:
        raise ConfigError(f"unknown RSA method {method!r} (choose {', '.join(RSA_METHODS)})")


def check_device(backend: str, device: str) -> None:
    """Refuse an unknown backend, a device the numpy backend cannot use, or missing CUDA."""
    if backend not in ("numpy", "torch"):
        raise ConfigError(f"unknown backend {backend!r} (choose numpy, torch)")
    if backend == "numpy" and device != "cpu":
        raise ConfigError(f"the numpy backend runs on the cpu, not {device!r}; use backend='torch'")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available; use device='cpu'"
            )


class _Mantel:
    """The observed RSA statistic of (A, B) and its null for any block of permutations."""

    def __init__(
        self, a: np.ndarray, b: np.ndarray, method: str, space_a: str, space_b: str
    ) -> None:
        n = a.shape[0]
        iu = np.triu_indices(n, 1)
        u, v = a[iu], b[iu]
        for vec, space in ((u, space_a), (v, space_b)):
            if np.ptp(vec) == 0:
                raise DegenerateInputError(
                    f"space {space!r}: all {vec.size} pairwise similarities are equal, so the "
                    "RSA correlation is undefined; check that the space's vectors differ"
                )
        self.n, self.method, self.b, self.iu = n, method, b, iu
        if method == "kendall":
            self.u = u
            self.rho = kendall_tau_a(u, v)
        else:
            if method == "spearman":
                u, v = stats.rankdata(u), stats.rankdata(v)
            self.uc, self.vc = u - u.mean(), v - v.mean()
            self.norm = float(np.linalg.norm(self.uc) * np.linalg.norm(self.vc))
            self.rho = float(np.dot(self.uc, self.vc) / self.norm)

    def null(
        self,
        rng: np.random.Generator,
        start: int,
        stop: int,
        batch_size: int,
        n_jobs: int | None,
        backend: str = "numpy",
        device: str = "cpu",
    ) -> np.ndarray:
        """Statistics of permutations start..stop-1 of the stream of ``rng``.

        Kendall's null re-sorts every permutation on the CPU whatever the backend.
        """
        if self.method == "kendall":
            b, iu = self.b, self.iu
            return np.array(
                [
                    kendall_tau_a(self.u, b[np.ix_(p, p)][iu])
                    for batch in permutation_stream(rng, self.n, start, stop, batch_size)
                    for p in batch
                ],
                dtype=np.float64,
            )
        if backend == "torch":
            return _torch_mantel_null(
                self.uc, self.vc, self.n, self.norm, rng, start, stop, batch_size, device
            )
        return _mantel_null(
            self.uc, self.vc, self.n, self.norm, rng, start, stop, batch_size, n_jobs
        )


def _full_tables(uc: np.ndarray, vc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric n x n tables with a zero diagonal holding the two centred triangles."""
    iu = np.triu_indices(n, 1)
    ua = np.zeros((n, n))
    ua[iu] = uc
    ua += ua.T
    vb = np.zeros((n, n))
    vb[iu] = vc
    vb += vb.T
    return ua, vb


def _torch_mantel_null(
    uc: np.ndarray,
    vc: np.ndarray,
    n: int,
    norm: float,
    rng: np.random.Generator,
    start: int,
    stop: int,
    batch_size: int,
    device: str,
) -> np.ndarray:
    """:func:`_mantel_null` on a torch device in float64: a batch of gathers, one reduction."""
    import torch

    ua, vb = _full_tables(uc, vc, n)
    dev = torch.device(device)
    left = torch.as_tensor(ua, dtype=torch.float64, device=dev)
    table = torch.as_tensor(vb, dtype=torch.float64, device=dev)
    scale = 0.5 / norm
    parts = []
    for perms in permutation_stream(rng, n, start, stop, batch_size):
        for p in torch.as_tensor(perms, device=dev):
            both = table.index_select(0, p).index_select(1, p)
            parts.append(torch.sum(left * both) * scale)
    if not parts:
        return np.empty(0, dtype=np.float64)
    return torch.stack(parts).cpu().numpy().astype(np.float64)


def _compiled_mantel_null(
    ua: np.ndarray,
    vb: np.ndarray,
    n: int,
    norm: float,
    rng: np.random.Generator,
    start: int,
    stop: int,
    n_jobs: int | None,
) -> np.ndarray | None:
    """:func:`_mantel_null` through the compiled gather (one pass over the upper triangle
    per block of permutations); None where the numpy path runs. The random stream is only
    drawn from when the kernel is used."""
    if not kernels.use_compiled(n):
        return None
    # Centred ranks are multiples of 1/2: float32 holds them exactly and halves the bytes
    # read; the products and sums stay float64.
    ua32, vb32 = ua.astype(np.float32), vb.astype(np.float32)
    exact32 = np.array_equal(ua32, ua) and np.array_equal(vb32, vb)
    left, table = (ua32, vb32) if exact32 else (ua, vb)
    jobs = n_jobs or min(8, os.cpu_count() or 1)
    state = rng.bit_generator.state
    # Scaled as the numpy path scales its whole-matrix sum (twice the triangle's): where the
    # sums are exact (ranks) the two nulls are equal bit for bit.
    scale = 0.5 / norm
    parts = []
    for perms in permutation_stream(rng, n, start, stop, kernels.PERMUTATION_BLOCK):
        sums = kernels.run(
            "gathered_dots", left, table, perms.astype(np.int64), False, threads=jobs
        )
        if sums is None:
            rng.bit_generator.state = state
            return None
        parts.append((2.0 * sums) * scale)
    return np.concatenate(parts)


def _mantel_null(
    uc: np.ndarray,
    vc: np.ndarray,
    n: int,
    norm: float,
    rng: np.random.Generator,
    start: int,
    stop: int,
    batch_size: int,
    n_jobs: int | None,
) -> np.ndarray:
    """Null of sum_{i<j} uc[i,j] vc[p_i, p_j] / norm over permutations start..stop-1."""
    if stop == start:
        return np.empty(0, dtype=np.float64)
    # Full symmetric matrices with a zero diagonal: the full-matrix dot product is twice the
    # upper-triangle one, and a row gather then a column gather is a relabelling.
    ua, vb = _full_tables(uc, vc, n)
    compiled = _compiled_mantel_null(ua, vb, n, norm, rng, start, stop, n_jobs)
    if compiled is not None:
        return compiled
    scale = 0.5 / norm
    # Centred ranks are multiples of 1/2 below 2**23 in magnitude, so float32 holds them
    # exactly: half the bytes to gather, and the float64 products and sums are unchanged.
    # Pearson's arbitrary values stay float64.
    ua32, vb32 = ua.astype(np.float32), vb.astype(np.float32)
    exact32 = np.array_equal(ua32, ua) and np.array_equal(vb32, vb)
    left: np.ndarray = ua32 if exact32 else ua
    table: np.ndarray = vb32 if exact32 else vb
    batches = list(permutation_stream(rng, n, start, stop, batch_size))

    def run(perms: np.ndarray) -> np.ndarray:
        rows = np.empty_like(table)
        both = np.empty_like(table)
        out = np.empty(len(perms))
        for k, p in enumerate(perms):
            np.take(table, p, axis=0, out=rows)
            np.take(rows, p, axis=1, out=both)
            # einsum accumulates in float64 whatever the storage and avoids the threaded
            # BLAS dot, which stalls when threads share cores.
            out[k] = np.einsum("ij,ij->", left, both, dtype=np.float64) * scale
        return out

    jobs = n_jobs or min(8, os.cpu_count() or 1)
    if jobs <= 1 or len(batches) == 1:
        parts = [run(perms) for perms in batches]
    else:
        # numpy's take and BLAS dot release the GIL, so threads share the gathers.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            parts = list(pool.map(run, batches))
    return np.concatenate(parts)
