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


def hsic_unbiased(k: np.ndarray, lk: np.ndarray) -> float:
    """Unbiased HSIC as the U-statistic over every ordered 4-tuple of distinct concepts:
    mean of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq."""
    n = len(k)
    total = 0.0
    count = 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += k[i, j] * lk[i, j] + k[i, j] * lk[q, r] - 2.0 * k[i, j] * lk[i, q]
        count += 1
    return total / count


def cka(x: np.ndarray, y: np.ndarray, estimator: str = "unbiased") -> float:
    """Linear CKA: unbiased from the U-statistic, biased with an explicit centring matrix."""
    k, lk = x @ x.T, y @ y.T
    if estimator == "unbiased":
        return hsic_unbiased(k, lk) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(lk, lk))
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    kc, lc = h @ k @ h, h @ lk @ h
    return float(np.trace(kc @ lc) / np.sqrt(np.trace(kc @ kc) * np.trace(lc @ lc)))


def cka_multiset(x: np.ndarray, y: np.ndarray, idx: list[int], estimator: str) -> float:
    """CKA of the rows of a multiset, kernel entries between two copies of one concept zeroed
    one at a time (unbiased from the U-statistic, biased with a centring matrix)."""
    m = len(idx)
    k, lk = np.zeros((m, m)), np.zeros((m, m))
    for p in range(m):
        for q in range(m):
            if p == q or idx[p] != idx[q]:
                k[p, q] = np.dot(x[idx[p]], x[idx[q]])
                lk[p, q] = np.dot(y[idx[p]], y[idx[q]])
    if estimator == "unbiased":
        return hsic_unbiased(k, lk) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(lk, lk))
    h = np.eye(m) - np.ones((m, m)) / m
    kc, lc = h @ k @ h, h @ lk @ h
    return float(np.trace(kc @ lc) / np.sqrt(np.trace(kc @ kc) * np.trace(lc @ lc)))


def knn_sets(x: np.ndarray, k: int) -> list[set[int]]:
    """Each concept's k nearest other concepts, one at a time, by the documented tie rule:
    cosine similarity rounded to a multiple of 2^-32 (half to even), then concept index."""
    n = len(x)
    out = []
    for i in range(n):
        scored = []
        for j in range(n):
            if j != i:
                cos = np.dot(x[i], x[j]) / np.sqrt(np.dot(x[i], x[i]) * np.dot(x[j], x[j]))
                scored.append((-round(float(cos) * 2**32), j))
        scored.sort()
        out.append({j for _, j in scored[:k]})
    return out


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Huh et al. (2024): mean over concepts of |N_A(i) & N_B(i)| / k, by a literal loop."""
    na, nb = knn_sets(x, k), knn_sets(y, k)
    return float(np.mean([len(na[i] & nb[i]) / k for i in range(len(x))]))


def ridge_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, lam: float, x_test: np.ndarray
) -> np.ndarray:
    """Ridge with an unpenalised intercept, refitted from scratch (primal normal equations)."""
    mx, my = x_train.mean(axis=0), y_train.mean(axis=0)
    xc = x_train - mx
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x_train.shape[1]), xc.T @ (y_train - my))
    return (x_test - mx) @ w + my


def regression_two_vs_two(
    x: np.ndarray,
    y: np.ndarray,
    penalties: list[float],
    distance: str = "cosine",
    tie_tol: float = 1e-10,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair correctness and chosen penalty, refitting ridge for every pair and, inside
    each pair's training set, for every left-out concept of the inner cross-validation."""
    n = len(x)
    xc = x - x.mean(axis=0)
    scale = float(np.sum(xc * xc)) / n
    lams = [p * scale for p in penalties]

    def d(u: np.ndarray, v: np.ndarray) -> float:
        if distance == "pearson":
            return 1.0 - pearson(u, v)
        return 1.0 - float(np.dot(u, v) / np.sqrt(np.dot(u, u) * np.dot(v, v)))

    correct = np.zeros((n, n), dtype=bool)
    chosen = np.full((n, n), -1)
    for i in range(n):
        for j in range(i + 1, n):
            train = [m for m in range(n) if m not in (i, j)]
            errors = []
            for lam in lams:
                err = 0.0
                for k in train:
                    inner = [m for m in train if m != k]
                    pred = ridge_fit_predict(x[inner], y[inner], lam, x[[k]])[0]
                    err += float(np.sum((pred - y[k]) ** 2))
                errors.append(err)
            best = int(np.argmin(errors))
            pred_i, pred_j = ridge_fit_predict(x[train], y[train], lams[best], x[[i, j]])
            lhs = d(pred_i, y[i]) + d(pred_j, y[j])
            rhs = d(pred_i, y[j]) + d(pred_j, y[i])
            correct[i, j] = lhs < rhs - tie_tol
            chosen[i, j] = best
    return correct, chosen


def multiset(counts: np.ndarray) -> list[int]:
    """Concept indices of a resample, each as often as its count says."""
    return [i for i in range(len(counts)) for _ in range(int(counts[i]))]


def pair_accuracy(correct: np.ndarray, idx: list[int]) -> float:
    """Accuracy over the pairs of positions of a multiset, copies of one concept left out."""
    hits = total = 0
    for p, q in itertools.combinations(range(len(idx)), 2):
        u, v = sorted((idx[p], idx[q]))
        if u != v:
            total += 1
            hits += bool(correct[u, v])
    return hits / total


def rsa_multiset(a: np.ndarray, b: np.ndarray, idx: list[int], method: str) -> float:
    u, v = [], []
    for p, q in itertools.combinations(range(len(idx)), 2):
        if idx[p] != idx[q]:
            u.append(a[idx[p], idx[q]])
            v.append(b[idx[p], idx[q]])
    return rsa_from_lists(u, v, method)


def rsa_from_lists(u: list[float], v: list[float], method: str) -> float:
    if method == "spearman":
        return float(stats.spearmanr(u, v).statistic)
    if method == "pearson":
        return float(stats.pearsonr(u, v).statistic)
    return tau_a(u, v)


def paired_difference(stat_a, stat_b, n: int, n_bootstrap: int, n_flips: int, seed: int, level):
    """Bootstrap interval and sign-flip p of stat_a - stat_b, statistics of index lists, by
    loops over the same draws the library makes (two streams spawned from the seed)."""
    boot_rng, flip_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    everything = list(range(n))
    diffs = []
    for _ in range(n_bootstrap):
        counts = np.bincount(boot_rng.integers(0, n, size=n), minlength=n)
        idx = multiset(counts)
        diffs.append(stat_a(idx) - stat_b(idx))
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2]) if diffs else (0, 0)
    d = []
    for i in range(n):
        rest = [j for j in everything if j != i]
        ps_a = n * stat_a(everything) - (n - 1) * stat_a(rest)
        ps_b = n * stat_b(everything) - (n - 1) * stat_b(rest)
        d.append(ps_a - ps_b)
    observed = abs(sum(d) / n)
    null = []
    for _ in range(n_flips):
        signs = 2 * flip_rng.integers(0, 2, size=n) - 1
        null.append(abs(sum(s * x for s, x in zip(signs, d, strict=True))) / n)
    p = (1 + sum(1 for x in null if x >= observed - 1e-12)) / (1 + n_flips)
    return stat_a(everything) - stat_b(everything), low, high, p, null


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


def concept_blocks(concepts: list[str]) -> list[list[int]]:
    """Each concept's item positions in item order, concepts in order of first appearance."""
    blocks: dict[str, list[int]] = {}
    for i, c in enumerate(concepts):
        blocks.setdefault(c, []).append(i)
    return list(blocks.values())


def scheme_permutation(rng: np.random.Generator, concepts: list[str], scheme: str) -> np.ndarray:
    """One relabelling of image-level items as semwh.analyze.design words each scheme: item
    i takes the values of item perm[i]."""
    n = len(concepts)
    if scheme == "images":
        return rng.permutation(n)
    blocks = concept_blocks(concepts)
    perm = list(range(n))
    if scheme == "concepts":
        # Concepts of one size exchange, whole and in order; one draw per size, smallest first.
        for size in sorted({len(b) for b in blocks}):
            same = [b for b in blocks if len(b) == size]
            order = rng.permutation(len(same))
            for target, k in zip(same, order, strict=True):
                for i, j in zip(target, same[k], strict=True):
                    perm[i] = j
    else:
        # Images exchange inside their concept; one draw per concept of two or more images.
        for block in blocks:
            if len(block) > 1:
                order = rng.permutation(len(block))
                for i, k in zip(block, order, strict=True):
                    perm[i] = block[k]
    return np.array(perm)


def scheme_rows(rng: np.random.Generator, concepts: list[str], unit: str) -> np.ndarray:
    """One bootstrap resample of image-level items: images with replacement, or concepts
    with replacement each with all its images in item order."""
    n = len(concepts)
    if unit == "images":
        return rng.integers(0, n, size=n)
    blocks = concept_blocks(concepts)
    drawn = rng.integers(0, len(blocks), size=len(blocks))
    return np.array([i for k in drawn for i in blocks[k]])
