"""Paired difference of two results over the same concepts: bootstrap interval and
permutation p-value.

Each result is given as a *weighted statistic*: a function of concept counts w (length n,
non-negative integers) that computes the statistic on the concept multiset w describes (all
ones: the result itself). Both statistics are always evaluated on the same counts, so the
comparison is paired: layer vs layer, trained vs random control, model vs model, measure vs
measure, as long as the concepts are the same.

* **Interval**: concepts are resampled with replacement (one draw of counts for both
  results); the percentile interval of the differences at ``level``.
* **p-value**: the leave-one-concept-out (jackknife) pseudo-values of each statistic,
  ps_i = n T - (n - 1) T_(-i), give a per-concept difference d_i = ps_a,i - ps_b,i whose mean
  is the jackknife estimate of the difference. Under no difference between the two results
  each d_i is as likely to be positive as negative, so the test flips the signs of the d_i at
  random: p = (1 + #{|mean(s d)| >= |mean(d)|}) / (1 + N), two-sided.

The bootstrap and the sign flips draw from two streams of the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from semwh.analyze._checks import MIN_CONCEPTS
from semwh.analyze.design import draw_rows
from semwh.analyze.permutation import STAT_TOL, check_n_permutations, make_rng
from semwh.errors import ConfigError
from semwh.validate import check_level

WeightedStatistic = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class DifferenceResult:
    """Outcome of :func:`paired_difference`.

    Attributes:
        statistic_a: the first result's statistic on all concepts.
        statistic_b: the second result's statistic on all concepts.
        difference: statistic_a - statistic_b.
        ci_low: lower end of the bootstrap interval of the difference (NaN without resamples
            or when every resample was degenerate).
        ci_high: upper end.
        level: confidence level of the interval.
        p_value: two-sided sign-flip p-value (None when N = 0).
        jackknife_difference: mean of the per-concept pseudo-value differences.
        bootstrap: the bootstrap differences, in draw order (NaN: degenerate resample).
        null: the N sign-flipped |mean| values, in draw order.
        n_concepts: n.
        n_bootstrap: number of resamples.
        n_permutations: N.
        seed: the seed (None when a Generator was passed in).
    """

    statistic_a: float
    statistic_b: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    p_value: float | None
    jackknife_difference: float
    bootstrap: np.ndarray = field(repr=False)
    null: np.ndarray = field(repr=False)
    n_concepts: int
    n_bootstrap: int
    n_permutations: int
    seed: int | None


def pseudo_values(stat: WeightedStatistic, n: int) -> np.ndarray:
    """Jackknife pseudo-values n T - (n - 1) T_(-i) of a weighted statistic."""
    full = stat(np.ones(n))
    values = np.empty(n)
    for i in range(n):
        w = np.ones(n)
        w[i] = 0.0
        values[i] = n * full - (n - 1) * stat(w)
    return values


def sign_flip_null(d: np.ndarray, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """|mean(s d)| for N draws of random signs s, one ``rng.integers`` call per draw."""
    out = np.empty(n_permutations)
    for t in range(n_permutations):
        signs = 2.0 * rng.integers(0, 2, size=d.size) - 1.0
        out[t] = abs(float(signs @ d)) / d.size
    return out


def paired_difference(
    stat_a: WeightedStatistic,
    stat_b: WeightedStatistic,
    n: int,
    *,
    n_bootstrap: int = 1000,
    n_permutations: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> DifferenceResult:
    """Bootstrap interval and sign-flip p-value of the difference of two paired statistics.

    Args:
        stat_a: the first result as a function of concept counts.
        stat_b: the second result, over the same n concepts in the same order.
        n: the number of concepts.
        n_bootstrap: resamples of the concepts (0: no interval).
        n_permutations: sign flips of the per-concept differences (0: no p-value).
        level: confidence level of the interval.
        seed: integer seed (recorded) or a numpy Generator (recorded as None).

    Raises:
        ConfigError: fewer than 4 concepts, bad counts or a level outside (0, 1).
    """
    if n < MIN_CONCEPTS:
        raise ConfigError(f"a paired difference needs at least {MIN_CONCEPTS} concepts, got {n}")
    n_permutations = check_n_permutations(n_permutations)
    n_bootstrap = check_n_permutations(n_bootstrap)
    check_level(level, "level")
    rng, recorded = make_rng(seed)
    # Two independent streams of the seed: adding resamples never changes the sign flips.
    seed_seq = rng.bit_generator.seed_seq
    assert isinstance(seed_seq, np.random.SeedSequence)
    boot_rng, flip_rng = (np.random.default_rng(s) for s in seed_seq.spawn(2))
    ones = np.ones(n)
    a, b = float(stat_a(ones)), float(stat_b(ones))
    boot = np.empty(n_bootstrap)
    for t in range(n_bootstrap):
        w = np.bincount(draw_rows(boot_rng, n), minlength=n).astype(np.float64)
        boot[t] = stat_a(w) - stat_b(w)
    finite = boot[np.isfinite(boot)]
    if finite.size:
        low, high = (float(v) for v in np.quantile(finite, [(1 - level) / 2, (1 + level) / 2]))
    else:
        low = high = float("nan")
    d = pseudo_values(stat_a, n) - pseudo_values(stat_b, n)
    observed = abs(float(d.mean()))
    null = sign_flip_null(d, n_permutations, flip_rng)
    p_value = None
    if n_permutations:
        p_value = float((1 + np.count_nonzero(null >= observed - STAT_TOL)) / (1 + null.size))
    return DifferenceResult(
        statistic_a=a,
        statistic_b=b,
        difference=a - b,
        ci_low=low,
        ci_high=high,
        level=level,
        p_value=p_value,
        jackknife_difference=float(d.mean()),
        bootstrap=boot,
        null=null,
        n_concepts=n,
        n_bootstrap=n_bootstrap,
        n_permutations=n_permutations,
        seed=recorded,
    )


def _expand(w: np.ndarray) -> np.ndarray:
    """Concept indices of the multiset with counts ``w``."""
    return np.repeat(np.arange(w.size), np.asarray(w, dtype=np.int64))


def weighted_pairs(pair_correct: np.ndarray) -> WeightedStatistic:
    """Accuracy over concept pairs with fixed per-pair outcomes (2 vs 2, regression 2 vs 2).

    A multiset with counts w holds pair (u, v) w_u w_v times; pairs of two copies of one
    concept carry no information and are left out (as in :func:`bootstrap_two_vs_two`).
    """
    c = np.asarray(pair_correct, dtype=np.float64)
    c = np.triu(c, 1)
    c = c + c.T
    everything = 1.0 - np.eye(c.shape[0])

    def stat(w: np.ndarray) -> float:
        total = float(w @ everything @ w)
        return float(w @ c @ w) / total if total > 0 else float("nan")

    return stat


def weighted_concepts(per_concept: np.ndarray) -> WeightedStatistic:
    """The mean of per-concept scores over a multiset, for scores that do not depend on
    each other (not mutual k-NN's: see :func:`weighted_knn`)."""
    scores = np.asarray(per_concept, dtype=np.float64)

    def stat(w: np.ndarray) -> float:
        total = float(w.sum())
        return float(w @ scores) / total if total > 0 else float("nan")

    return stat


def weighted_rsa(sim_a: np.ndarray, sim_b: np.ndarray, method: str) -> WeightedStatistic:
    """RSA over the pairs of distinct concepts of a multiset (as :func:`bootstrap_rsa`)."""
    from semwh.analyze.bootstrap import pair_correlation

    def stat(w: np.ndarray) -> float:
        idx = _expand(w)
        iu = np.triu_indices(idx.size, 1)
        rows, cols = idx[iu[0]], idx[iu[1]]
        keep = rows != cols
        a, b = sim_a[rows[keep], cols[keep]], sim_b[rows[keep], cols[keep]]
        return pair_correlation(a, b, method)

    return stat


def _multiset_cka(k: np.ndarray, lk: np.ndarray, estimator: str) -> float:
    """CKA from two Gram matrices whose copy-pair entries are already zero (NaN when a
    space carries no variance on the multiset)."""
    n = k.shape[0]
    if estimator == "biased":
        kc = k - k.mean(axis=0) - k.mean(axis=1)[:, None] + k.mean()
        lc = lk - lk.mean(axis=0) - lk.mean(axis=1)[:, None] + lk.mean()
        cross, self_k, self_l = (float(np.sum(p * q)) for p, q in ((kc, lc), (kc, kc), (lc, lc)))
    else:
        if n < 4:
            return float("nan")
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(lk, 0.0)
        kr, lr = k.sum(axis=1), lk.sum(axis=1)

        def hsic(p: np.ndarray, q: np.ndarray, pr: np.ndarray, qr: np.ndarray) -> float:
            return (
                float(np.sum(p * q))
                + float(pr.sum()) * float(qr.sum()) / ((n - 1) * (n - 2))
                - 2.0 * float(pr @ qr) / (n - 2)
            ) / (n * (n - 3))

        cross, self_k, self_l = hsic(k, lk, kr, lr), hsic(k, k, kr, kr), hsic(lk, lk, lr, lr)
    if not (self_k > 0 and self_l > 0):
        return float("nan")
    return cross / float(np.sqrt(self_k * self_l))


def weighted_cka(x: np.ndarray, y: np.ndarray, estimator: str) -> WeightedStatistic:
    """Linear CKA on the rows of a multiset, the kernel entries between two copies of one
    concept set to zero (they carry no information, as the pairs left out by
    :func:`weighted_pairs` and :func:`weighted_rsa`; kept, they inflate CKA between unrelated
    spaces). On the concepts themselves (all counts 1) it is the CKA of the two spaces; NaN
    when the multiset is degenerate."""
    from semwh.analyze.cka import CKA_ESTIMATORS

    if estimator not in CKA_ESTIMATORS:
        raise ConfigError(
            f"unknown CKA estimator {estimator!r} (choose {', '.join(CKA_ESTIMATORS)})"
        )
    gram_x = np.asarray(x, dtype=np.float64) @ np.asarray(x, dtype=np.float64).T
    gram_y = np.asarray(y, dtype=np.float64) @ np.asarray(y, dtype=np.float64).T

    def stat(w: np.ndarray) -> float:
        idx = _expand(w)
        copies = (idx[:, None] == idx[None, :]) & ~np.eye(idx.size, dtype=bool)
        k = gram_x[np.ix_(idx, idx)]
        lk = gram_y[np.ix_(idx, idx)]
        k[copies] = 0.0
        lk[copies] = 0.0
        return _multiset_cka(k, lk, estimator)

    return stat


KNN_DIFFERENCE_REFUSED = (
    "difference tests of mutual k-NN results are not supported: its per-concept scores "
    "depend on each other through shared neighbours, which the concept bootstrap and sign "
    "flips do not model (a true null is rejected far more often than alpha)"
)


def weighted_knn(x: np.ndarray, y: np.ndarray, k: int) -> WeightedStatistic:
    """Refused: mutual k-NN has no valid weighted statistic for :func:`paired_difference`.

    Each concept's score depends on the others through shared neighbours, so the jackknife
    pseudo-values and sign flips treat dependent scores as independent: in simulation the
    test rejected a true null in about a third of runs at alpha 0.05. ``semwh analyze diff``
    refuses k-NN results for the same reason.

    Raises:
        ConfigError: always.
    """
    raise ConfigError(f"{KNN_DIFFERENCE_REFUSED}; compare rsa, 2v2, cka or reg2v2 results")
