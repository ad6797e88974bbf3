"""Bootstrap confidence intervals over concepts for RSA and 2 vs 2.

Concepts are resampled with replacement (seeded Generator). Pairs of two copies of the same
concept carry no information about the structure (their similarity is 1 by construction), so
they are left out of every statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from semwh.analyze._checks import as_similarity_pair
from semwh.analyze.design import draw_rows
from semwh.analyze.permutation import make_rng
from semwh.analyze.rsa import RSA_METHODS, kendall_tau_a
from semwh.analyze.two_vs_two import TIE_TOL, two_vs_two
from semwh.errors import ConfigError
from semwh.validate import check_count, check_level


@dataclass(frozen=True)
class BootstrapCI:
    """A percentile bootstrap interval.

    Attributes:
        estimate: the statistic on all concepts.
        low: lower bound (quantile (1 - level) / 2 of the bootstrap values).
        high: upper bound (quantile (1 + level) / 2).
        level: confidence level, e.g. 0.95.
        values: the bootstrap statistics (NaN where a resample was degenerate).
        n_bootstrap: number of resamples.
        seed: seed (None when a Generator was passed in).
    """

    estimate: float
    low: float
    high: float
    level: float
    values: np.ndarray = field(repr=False)
    n_bootstrap: int
    seed: int | None


def _interval(estimate: float, values: np.ndarray, level: float, seed: int | None) -> BootstrapCI:
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    else:
        low = high = float("nan")
    return BootstrapCI(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        level=level,
        values=values,
        n_bootstrap=values.size,
        seed=seed,
    )


def _check(n_bootstrap: int, level: float) -> None:
    check_count(n_bootstrap, "n_bootstrap", minimum=1)
    check_level(level, "level")


def bootstrap_rsa(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    method: str = "spearman",
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
) -> BootstrapCI:
    """Percentile bootstrap CI of the RSA correlation, resampling concepts.

    Each resample takes n concepts with replacement and correlates the similarities of the
    pairs of distinct concepts in it (duplicated pairs count as often as they are drawn). At
    the image level a resample of whole concepts holds as many images as its concepts have,
    which need not be n (:mod:`semwh.analyze.design`).
    """
    if method not in RSA_METHODS:
        raise ConfigError(f"unknown RSA method {method!r} (choose {', '.join(RSA_METHODS)})")
    _check(n_bootstrap, level)
    a, b, _ = as_similarity_pair(sim_a, sim_b, labels, space_a, space_b)
    rng, recorded = make_rng(seed)
    n = a.shape[0]
    iu = np.triu_indices(n, 1)
    values = np.empty(n_bootstrap)
    for t in range(n_bootstrap):
        idx = draw_rows(rng, n)
        rows, cols = resampled_pairs(idx, iu)
        keep = rows != cols
        values[t] = pair_correlation(a[rows[keep], cols[keep]], b[rows[keep], cols[keep]], method)
    return _interval(pair_correlation(a[iu], b[iu], method), values, level, recorded)


def resampled_pairs(
    idx: np.ndarray, iu: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) items of every pair of places of a resample ``idx``: ``iu`` (the
    upper triangle of the n places) when it has n places, else its own triangle."""
    if idx.size * (idx.size - 1) // 2 != iu[0].size:
        iu = np.triu_indices(idx.size, 1)
    return idx[iu[0]], idx[iu[1]]


def pair_correlation(u: np.ndarray, v: np.ndarray, method: str) -> float:
    """The RSA correlation of two vectors of pair similarities; NaN when either is constant
    (a degenerate resample)."""
    if u.size < 2 or np.ptp(u) == 0 or np.ptp(v) == 0:
        return float("nan")
    if method == "kendall":
        return kendall_tau_a(u, v)
    if method == "spearman":
        u, v = stats.rankdata(u), stats.rankdata(v)
    return float(np.corrcoef(u, v)[0, 1])


def bootstrap_two_vs_two(
    sim_a: np.ndarray,
    sim_b: np.ndarray,
    *,
    distance: str = "pearson",
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    tie_tol: float = TIE_TOL,
) -> BootstrapCI:
    """Percentile bootstrap CI of the 2 vs 2 accuracy, resampling concepts.

    The per-pair decisions are computed once on all concepts (the similarity rows stay those
    of the full concept set); a resample with concept counts w weighs pair (u, v) by
    w_u * w_v, so its accuracy is w^T C w / w^T U w with C the correct pairs and U all pairs.
    """
    _check(n_bootstrap, level)
    result = two_vs_two(
        sim_a,
        sim_b,
        distance=distance,
        labels=labels,
        space_a=space_a,
        space_b=space_b,
        tie_tol=tie_tol,
        return_pairs=True,
    )
    assert result.pair_correct is not None
    n = result.n_concepts
    correct = result.pair_correct.astype(np.float64)
    correct = correct + correct.T
    everything = np.ones((n, n)) - np.eye(n)
    rng, recorded = make_rng(seed)
    counts = np.stack(
        [np.bincount(draw_rows(rng, n), minlength=n) for _ in range(n_bootstrap)]
    ).astype(np.float64)
    hits = ((counts @ correct) * counts).sum(axis=1)
    total = ((counts @ everything) * counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = hits / total
    return _interval(result.accuracy, values, level, recorded)
