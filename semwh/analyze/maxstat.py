"""Family-wise inference over a grid of tests: the max-statistic null and the peak's depth.

A grid compares every space of one side (the layers of a vision model, say) with every space
of the other (the layers of a language model, or one target space). Picking its best cell and
testing that cell against its own null overstates the evidence: the best of many cells is
large by chance. The max-statistic permutation test (Westfall & Young's single-step maxT)
corrects for the choice: each permutation relabels the concepts of the target side once and
scores *every* cell with that same relabelling; the maximum over the cells of each
permutation forms the null of the best cell. The family-wise p of cell c is

    p_fwe[c] = (1 + #{k : max_c' null[c', k] >= stat[c]}) / (1 + N),

which controls the family-wise error rate over all cells, and is the p of the best cell when
c is the best one.

semwh's permutation tests draw permutation k as the k-th ``rng.permutation(n)`` of the seed's
stream (:mod:`semwh.analyze.permutation`), so the nulls of cells computed over the *same
concepts in the same order* with the *same seed* are aligned: column k of every cell's null
used the same relabelling. :func:`max_statistic` takes those aligned nulls; nothing else.

The peak layer's relative depth gets a concept-bootstrap interval (:func:`peak_depth`): every
resample of the concepts scores every layer (the same resample for all layers) and the
relative depth of that resample's best layer is recorded; the interval is the percentile
interval of those depths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from semwh.analyze.permutation import STAT_TOL
from semwh.errors import ConfigError
from semwh.validate import check_level


@dataclass(frozen=True)
class MaxStatistic:
    """Outcome of :func:`max_statistic`.

    Attributes:
        statistics: The observed statistic of each cell, in the order given.
        null: The N maxima over cells, one per permutation, in stream order.
        p_fwe: Family-wise p of each cell (single-step maxT).
        best: Index of the best cell (the first one on a tie).
        best_statistic: Its statistic.
        p_best: Its family-wise p.
        n_permutations: N.
    """

    statistics: np.ndarray = field(repr=False)
    null: np.ndarray = field(repr=False)
    p_fwe: np.ndarray = field(repr=False)
    best: int
    best_statistic: float
    p_best: float
    n_permutations: int


def max_statistic(
    statistics: Sequence[float] | np.ndarray,
    nulls: Sequence[Sequence[float]] | np.ndarray,
    *,
    tol: float = STAT_TOL,
) -> MaxStatistic:
    """The max-statistic null of a family of tests and each test's family-wise p.

    Args:
        statistics: Observed statistic of each of C cells (larger means more similar).
        nulls: C x N permuted statistics; column k of every row must come from the same
            relabelling of the target concepts (same seed, same concepts, same order).
        tol: Null maxima within ``tol`` below a statistic count as ``>=`` (rounding).

    Raises:
        ConfigError: No cells, no permutations, shapes that disagree, or non-finite values.
    """
    stats = np.asarray(statistics, dtype=np.float64).reshape(-1)
    null = np.asarray(nulls, dtype=np.float64)
    if stats.size == 0:
        raise ConfigError("a max-statistic test needs at least one cell")
    if null.ndim != 2 or null.shape[0] != stats.size:
        raise ConfigError(
            f"max-statistic test: {stats.size} statistics but nulls of shape {null.shape} "
            "(expected one row of N permuted statistics per cell)"
        )
    if null.shape[1] == 0:
        raise ConfigError("a max-statistic test needs permutations (N >= 1)")
    if not (np.isfinite(stats).all() and np.isfinite(null).all()):
        raise ConfigError("max-statistic test: non-finite statistics or null values")
    maxima = null.max(axis=0)
    ordered = np.sort(maxima)
    # #{maxima >= s - tol} for every cell at once.
    at_least = ordered.size - np.searchsorted(ordered, stats - tol, side="left")
    p_fwe = (1.0 + at_least) / (1.0 + ordered.size)
    best = int(np.argmax(stats))
    return MaxStatistic(
        statistics=stats,
        null=maxima,
        p_fwe=p_fwe,
        best=best,
        best_statistic=float(stats[best]),
        p_best=float(p_fwe[best]),
        n_permutations=int(ordered.size),
    )


@dataclass(frozen=True)
class PeakDepth:
    """Outcome of :func:`peak_depth`.

    Attributes:
        peak: Index of the best layer on all concepts (the shallowest on a tie).
        relative_depth: Its relative depth.
        low: Lower bound of the interval of the peak's relative depth.
        high: Upper bound.
        level: Confidence level.
        depths: Relative depth of each resample's peak (NaN where every layer was undefined).
        n_bootstrap: Number of resamples.
    """

    peak: int
    relative_depth: float
    low: float
    high: float
    level: float
    depths: np.ndarray = field(repr=False)
    n_bootstrap: int


def peak_depth(
    statistics: Sequence[float] | np.ndarray,
    resampled: Sequence[Sequence[float]] | np.ndarray,
    relative_depths: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
) -> PeakDepth:
    """Percentile interval of the peak layer's relative depth over concept resamples.

    Args:
        statistics: The statistic of each of L layers on all concepts.
        resampled: L x B statistics; column b of every row must come from the same resample
            of the concepts (NaN where that resample is degenerate for a layer).
        relative_depths: Relative depth of each layer (0 first, 1 last).
        level: Confidence level of the interval.

    Raises:
        ConfigError: Shapes that disagree, a level outside (0, 1), or no finite statistic.
    """
    stats = np.asarray(statistics, dtype=np.float64).reshape(-1)
    values = np.asarray(resampled, dtype=np.float64)
    depths = np.asarray(relative_depths, dtype=np.float64).reshape(-1)
    check_level(level, "level")
    if values.ndim != 2 or values.shape[0] != stats.size or depths.size != stats.size:
        raise ConfigError(
            f"peak depth: {stats.size} layers, {depths.size} depths and resampled statistics "
            f"of shape {values.shape} (expected one row per layer)"
        )
    if not np.isfinite(stats).any():
        raise ConfigError("peak depth: no layer has a finite statistic")
    peak = int(np.nanargmax(stats))
    filled = np.where(np.isfinite(values), values, -np.inf)
    defined = np.isfinite(values).any(axis=0)
    # argmax returns the first maximum: ties go to the shallower layer, as for the peak.
    winners = np.argmax(filled, axis=0)
    boot = np.where(defined, depths[winners], np.nan)
    finite = boot[np.isfinite(boot)]
    if finite.size:
        low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    else:
        low = high = float("nan")
    return PeakDepth(
        peak=peak,
        relative_depth=float(depths[peak]),
        low=float(low),
        high=float(high),
        level=level,
        depths=boot,
        n_bootstrap=int(values.shape[1]),
    )
