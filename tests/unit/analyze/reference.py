"""Slow, obviously-correct references for the analyses: explicit loops over scipy."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import stats


def pearson(u: np.ndarray, v: np.ndarray) -> float:
    """Pearson r by its textbook formula (NaN when a vector is constant)."""
    uc, vc = u - u.mean(), v - v.mean()
    den = np.sqrt((uc * uc).sum() * (vc * vc).sum())
    return float((uc * vc).sum() / den) if den > 0 else float("nan")


def similarity(x: np.ndarray, metric: str = "pearson") -> np.ndarray:
    n = len(x)
    s = np.empty((n, n))
    for i in range(n):
        for k in range(n):
            if metric == "pearson":
                s[i, k] = stats.pearsonr(x[i], x[k]).statistic
            elif metric == "spearman":
                s[i, k] = stats.spearmanr(x[i], x[k]).statistic
            else:
                s[i, k] = np.dot(x[i], x[k]) / np.sqrt(np.dot(x[i], x[i]) * np.dot(x[k], x[k]))
    return s


def upper(s: np.ndarray) -> list[float]:
    n = len(s)
    return [s[i, j] for i in range(n) for j in range(i + 1, n)]


def tau_a(u: list[float], v: list[float]) -> float:
    """Kendall tau-a by counting every pair: (concordant - discordant) / all pairs."""
    m = len(u)
    score = 0
    for a, b in itertools.combinations(range(m), 2):
        score += np.sign(u[a] - u[b]) * np.sign(v[a] - v[b])
    return float(score / (m * (m - 1) / 2))


def rsa(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    u, v = upper(a), upper(b)
    if method == "spearman":
        return float(stats.spearmanr(u, v).statistic)
    if method == "pearson":
        return float(stats.pearsonr(u, v).statistic)
    return tau_a(u, v)


def two_vs_two_pairs(
    a: np.ndarray, b: np.ndarray, distance: str = "pearson", tie_tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair correctness and margin, pair by pair, exactly as DESIGN words it."""
    n = len(a)

    def d(u: np.ndarray, v: np.ndarray) -> float:
        if distance == "pearson":
            if np.ptp(u) == 0 or np.ptp(v) == 0:
                return float("nan")
            return 1.0 - float(stats.pearsonr(u, v).statistic)
        return 1.0 - float(np.dot(u, v) / np.sqrt(np.dot(u, u) * np.dot(v, v)))

    correct = np.zeros((n, n), dtype=bool)
    margin = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i + 1, n):
            keep = [k for k in range(n) if k not in (i, j)]
            a_i, a_j, b_i, b_j = a[i, keep], a[j, keep], b[i, keep], b[j, keep]
            lhs = d(a_i, b_i) + d(a_j, b_j)
            rhs = d(a_i, b_j) + d(a_j, b_i)
            margin[i, j] = rhs - lhs
            correct[i, j] = bool(lhs < rhs - tie_tol)
    return correct, margin


def permutations(seed: int, n: int, count: int) -> list[np.ndarray]:
    """The permutations the library draws: one rng.permutation(n) per permutation."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(count)]


def relabel(s: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """S with concepts relabelled, rows and columns together, by an explicit loop."""
    n = len(s)
    out = np.empty_like(s)
    for i in range(n):
        for j in range(n):
            out[i, j] = s[perm[i], perm[j]]
    return out


def p_value(stat: float, null: list[float]) -> float:
    return (1 + sum(1 for x in null if x >= stat - 1e-12)) / (1 + len(null))


def max_statistic_null(
    sims_a: list[np.ndarray],
    sims_b: list[np.ndarray],
    test: str,
    seed: int,
    count: int,
    distance: str = "pearson",
    method: str = "spearman",
) -> tuple[list[float], list[float], list[float]]:
    """A grid's max-statistic test by a literal loop: permutation by permutation, relabel every
    B with the same permutation, score every cell, keep the maximum.

    Returns the cell statistics (row-major), the null maxima and each cell's family-wise p.
    """

    def score(a: np.ndarray, b: np.ndarray) -> float:
        if test == "rsa":
            return rsa(a, b, method)
        correct, _ = two_vs_two_pairs(a, b, distance)
        n = len(a)
        return float(correct.sum() / (n * (n - 1) / 2))

    cells = [(a, b) for a in sims_a for b in sims_b]
    stats = [score(a, b) for a, b in cells]
    maxima = []
    for perm in permutations(seed, len(sims_a[0]), count):
        maxima.append(max(score(a, relabel(b, perm)) for a, b in cells))
    return stats, maxima, [p_value(s, maxima) for s in stats]


def peak_depth_interval(
    sims_a: list[np.ndarray],
    sim_b: np.ndarray,
    depths: list[float],
    seed: int,
    count: int,
    level: float = 0.95,
) -> tuple[int, list[float], float, float]:
    """The peak layer's relative depth over concept resamples (RSA), resample by resample:
    the same draws as the library (one rng.integers(0, n, size=n) per resample), every layer
    scored on the resample's pairs of distinct concepts, the first best layer's depth kept."""
    n = len(sim_b)
    rng = np.random.default_rng(seed)

    def rho(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> float:
        u, v = [], []
        for x in range(n):
            for y in range(x + 1, n):
                if idx[x] != idx[y]:
                    u.append(a[idx[x], idx[y]])
                    v.append(b[idx[x], idx[y]])
        return float(stats.spearmanr(u, v).statistic)

    full = [rho(a, sim_b, np.arange(n)) for a in sims_a]
    chosen = []
    for _ in range(count):
        idx = rng.integers(0, n, size=n)
        values = [rho(a, sim_b, idx) for a in sims_a]
        best = max(range(len(values)), key=lambda k: (values[k], -k))
        chosen.append(depths[best])
    low, high = np.quantile(chosen, [(1 - level) / 2, (1 + level) / 2])
    return int(np.argmax(full)), chosen, float(low), float(high)
