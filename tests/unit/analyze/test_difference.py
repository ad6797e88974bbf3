"""Paired differences of two results: equal to loops over the same draws, and calibrated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semwh.analyze import similarity_matrix, two_vs_two
from semwh.analyze.difference import (
    paired_difference,
    weighted_cka,
    weighted_knn,
    weighted_pairs,
    weighted_rsa,
)
from semwh.errors import ConfigError
from tests.unit.analyze import reference as ref


def spaces(seed: int, n: int, noise: float = 2.0):
    """Two spaces equally related to a third: the same map, each with its own noise."""
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, 5))
    w = rng.standard_normal((5, 7))
    return (
        b @ w + noise * rng.standard_normal((n, 7)),
        b @ w + noise * rng.standard_normal((n, 7)),
        b,
    )


def check(got, want) -> None:
    diff, low, high, p, null = want
    assert got.difference == pytest.approx(diff, abs=1e-9)
    assert (got.ci_low, got.ci_high) == (
        pytest.approx(low, abs=1e-9),
        pytest.approx(high, abs=1e-9),
    )
    assert got.p_value == pytest.approx(p, abs=1e-12)
    np.testing.assert_allclose(got.null, null, atol=1e-9, rtol=0)


def test_pair_accuracy_difference_equals_the_loop_over_the_same_draws() -> None:
    a1, a2, b = spaces(0, 9)
    sb = similarity_matrix(b)
    c1 = two_vs_two(similarity_matrix(a1), sb, return_pairs=True).pair_correct
    c2 = two_vs_two(similarity_matrix(a2), sb, return_pairs=True).pair_correct
    got = paired_difference(
        weighted_pairs(c1), weighted_pairs(c2), 9, n_bootstrap=15, n_permutations=20, seed=3
    )
    want = ref.paired_difference(
        lambda idx: ref.pair_accuracy(c1, idx),
        lambda idx: ref.pair_accuracy(c2, idx),
        9,
        15,
        20,
        3,
        0.95,
    )
    check(got, want)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_rsa_difference_equals_the_loop_over_the_same_draws(method: str) -> None:
    a1, a2, b = spaces(1, 8)
    s1, s2, sb = similarity_matrix(a1), similarity_matrix(a2), similarity_matrix(b)
    got = paired_difference(
        weighted_rsa(s1, sb, method),
        weighted_rsa(s2, sb, method),
        8,
        n_bootstrap=10,
        n_permutations=15,
        seed=5,
    )
    want = ref.paired_difference(
        lambda idx: ref.rsa_multiset(s1, sb, idx, method),
        lambda idx: ref.rsa_multiset(s2, sb, idx, method),
        8,
        10,
        15,
        5,
        0.95,
    )
    check(got, want)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_cka_difference_equals_the_loop_over_the_same_draws(estimator: str) -> None:
    a1, a2, b = spaces(2, 7)
    got = paired_difference(
        weighted_cka(a1, b, estimator),
        weighted_cka(a2, b, estimator),
        7,
        n_bootstrap=6,
        n_permutations=10,
        seed=1,
    )
    want = ref.paired_difference(
        lambda idx: ref.cka_multiset(a1, b, idx, estimator),
        lambda idx: ref.cka_multiset(a2, b, idx, estimator),
        7,
        6,
        10,
        1,
        0.95,
    )
    check(got, want)
    assert got.difference == pytest.approx(
        ref.cka(a1, b, estimator) - ref.cka(a2, b, estimator), abs=1e-9
    )


def test_cka_bootstrap_of_unrelated_spaces_is_centred_on_the_estimate() -> None:
    """Copies of one concept are not pairs: kept, they pulled the bootstrap of two
    unrelated spaces' CKA (about 0) up to about 0.37, the interval excluding the estimate."""
    for seed in range(4):
        rng = np.random.default_rng(seed)
        x, y = rng.standard_normal((30, 20)), rng.standard_normal((30, 20))
        got = paired_difference(
            weighted_cka(x, y, "unbiased"),
            lambda w: 0.0,
            30,
            n_bootstrap=100,
            n_permutations=0,
            seed=seed,
        )
        assert got.ci_low < got.difference < got.ci_high
        assert abs(np.nanmean(got.bootstrap) - got.difference) < 0.05


def test_a_real_difference_is_found_and_bad_settings_are_refused() -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal((40, 5))
    close, far = b @ rng.standard_normal((5, 7)), rng.standard_normal((40, 7))
    got = paired_difference(
        weighted_cka(close, b, "unbiased"),
        weighted_cka(far, b, "unbiased"),
        40,
        n_bootstrap=50,
        n_permutations=99,
        seed=0,
    )
    assert got.difference > 0.5 and got.ci_low > 0 and got.p_value == 0.01
    with pytest.raises(ConfigError, match="at least 4 concepts"):
        paired_difference(lambda w: 0.0, lambda w: 0.0, 3)
    with pytest.raises(ConfigError, match="level"):
        paired_difference(lambda w: 0.0, lambda w: 0.0, 5, level=1.0)


def uniform_ks(ps: list[float], step: float) -> float:
    """KS p of p-values on a grid of ``step`` against the uniform (spread within a step)."""
    jitter = np.random.default_rng(0).uniform(0, step, len(ps))
    return float(stats.kstest(np.asarray(ps) - jitter, "uniform").pvalue)


def test_difference_p_values_are_uniform_when_there_is_no_difference() -> None:
    """Two spaces built by the same map with their own per-concept noise: no true
    difference; over 200 seeded draws the 2 vs 2 and CKA difference p-values are uniform."""
    ps_2v2, ps_cka = [], []
    for seed in range(200):
        a1, a2, b = spaces(100 + seed, 30)
        sb = similarity_matrix(b)
        c1 = two_vs_two(similarity_matrix(a1), sb, return_pairs=True).pair_correct
        c2 = two_vs_two(similarity_matrix(a2), sb, return_pairs=True).pair_correct
        ps_2v2.append(
            paired_difference(
                weighted_pairs(c1),
                weighted_pairs(c2),
                30,
                n_bootstrap=0,
                n_permutations=99,
                seed=seed,
            ).p_value
        )
        if seed < 120:
            x1, x2, y = (m[:16] for m in (a1, a2, b))
            ps_cka.append(
                paired_difference(
                    weighted_cka(x1, y, "unbiased"),
                    weighted_cka(x2, y, "unbiased"),
                    16,
                    n_bootstrap=0,
                    n_permutations=99,
                    seed=seed,
                ).p_value
            )
    assert uniform_ks(ps_2v2, 0.01) > 0.01
    assert uniform_ks(ps_cka, 0.01) > 0.01


def test_the_knn_weighted_statistic_refuses_like_the_cli() -> None:
    """Its difference test rejected a true null in about a third of runs at alpha 0.05."""
    x, y, _ = spaces(0, 12)
    with pytest.raises(ConfigError, match="mutual k-NN results are not supported"):
        weighted_knn(x, y, 3)
