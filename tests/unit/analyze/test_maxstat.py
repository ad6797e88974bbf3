"""The max-statistic test of a grid and the peak's depth interval against literal loops."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import bootstrap_rsa, rsa, similarity_matrix, two_vs_two
from semwh.analyze.maxstat import max_statistic, peak_depth
from semwh.errors import ConfigError
from tests.unit.analyze import reference


def _sims(rng: np.random.Generator, count: int, n: int, dim: int) -> list[np.ndarray]:
    base = rng.normal(size=(n, dim))
    return [
        similarity_matrix(base + (k + 1) * 0.8 * rng.normal(size=(n, dim))) for k in range(count)
    ]


def test_hand_worked_case() -> None:
    # Two cells, three permutations: maxima (0.5, 0.9, 0.7).
    result = max_statistic([0.8, 0.6], [[0.5, 0.2, 0.7], [0.1, 0.9, 0.3]])
    assert list(result.null) == [0.5, 0.9, 0.7]
    assert result.best == 0 and result.best_statistic == 0.8
    assert list(result.p_fwe) == [2 / 4, 3 / 4]
    assert result.p_best == 0.5


@pytest.mark.parametrize(
    ("test", "seed", "rows", "cols", "n", "count"),
    [
        ("rsa", 3, 3, 2, 9, 25),
        ("rsa", 11, 4, 1, 8, 25),  # a peak-layer test: one column
        ("2v2", 3, 2, 2, 7, 10),
        ("2v2", 11, 3, 1, 6, 10),
    ],
)
def test_grid_null_equals_a_loop_over_permutations(
    test: str, seed: int, rows: int, cols: int, n: int, count: int
) -> None:
    rng = np.random.default_rng(seed)
    sims_a, sims_b = _sims(rng, rows, n, 6), _sims(rng, cols, n, 5)
    fast_stats, fast_nulls = [], []
    for a in sims_a:
        for b in sims_b:
            # Every cell with the same seed: column k of every null is the same relabelling.
            if test == "rsa":
                r = rsa(a, b, n_permutations=count, seed=seed)
                fast_stats.append(r.rho)
            else:
                r = two_vs_two(a, b, n_permutations=count, seed=seed)
                fast_stats.append(r.accuracy)
            fast_nulls.append(r.null)
    fast = max_statistic(fast_stats, fast_nulls)
    stats, maxima, p_fwe = reference.max_statistic_null(sims_a, sims_b, test, seed, count)
    np.testing.assert_allclose(fast.statistics, stats, atol=1e-9)
    np.testing.assert_allclose(fast.null, maxima, atol=1e-9)
    np.testing.assert_allclose(fast.p_fwe, p_fwe, atol=1e-9)
    assert fast.best == int(np.argmax(stats))
    # The family-wise p is never below a cell's own permutation p.
    own = [reference.p_value(s, list(null)) for s, null in zip(fast_stats, fast_nulls, strict=True)]
    assert all(f >= o - 1e-12 for f, o in zip(fast.p_fwe, own, strict=True))


def test_peak_depth_equals_a_loop_over_resamples() -> None:
    rng = np.random.default_rng(5)
    n, count = 10, 40
    sims_a, (sim_b,) = _sims(rng, 4, n, 6), _sims(rng, 1, n, 5)
    depths = [0.0, 1 / 3, 2 / 3, 1.0]
    values = [bootstrap_rsa(a, sim_b, n_bootstrap=count, seed=17).values for a in sims_a]
    stats = [rsa(a, sim_b).rho for a in sims_a]
    fast = peak_depth(stats, values, depths)
    peak, chosen, low, high = reference.peak_depth_interval(sims_a, sim_b, depths, 17, count)
    assert fast.peak == peak and fast.relative_depth == depths[peak]
    np.testing.assert_allclose(fast.depths, chosen, atol=1e-9)
    assert fast.low == pytest.approx(low, abs=1e-9)
    assert fast.high == pytest.approx(high, abs=1e-9)


def test_misaligned_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="one row of N permuted statistics per cell"):
        max_statistic([0.1, 0.2], [[0.1, 0.2, 0.3]])
    with pytest.raises(ConfigError, match="needs permutations"):
        max_statistic([0.1], np.empty((1, 0)))
    with pytest.raises(ConfigError, match="non-finite"):
        max_statistic([np.nan], [[0.1]])
    with pytest.raises(ConfigError, match="one row per layer"):
        peak_depth([0.1, 0.2], [[0.1]], [0.0, 1.0])


def test_family_wise_p_of_the_peak_is_uniform_without_a_true_effect() -> None:
    """Calibration: layers and a target drawn independently, so no layer relates to the target;
    the family-wise p of the peak layer is uniform over seeded draws (Kolmogorov-Smirnov)."""
    from scipy import stats

    rng = np.random.default_rng(2024)
    p_best, own_best = [], []
    for draw in range(200):
        target = similarity_matrix(rng.normal(size=(10, 4)))
        layers = [similarity_matrix(rng.normal(size=(10, 4))) for _ in range(3)]
        results = [rsa(a, target, n_permutations=99, seed=draw) for a in layers]
        outcome = max_statistic([r.rho for r in results], [r.null for r in results])
        p_best.append(outcome.p_best)
        own_best.append(results[outcome.best].p_value)
    assert stats.kstest(p_best, "uniform").pvalue > 0.01
    # The best layer's own, uncorrected p is not: picking the best of 3 inflates it.
    assert stats.kstest(own_best, "uniform").pvalue < 1e-3
    assert np.mean(np.asarray(own_best) <= 0.05) > 2 * np.mean(np.asarray(p_best) <= 0.05)
