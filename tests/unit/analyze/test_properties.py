"""Properties that hold for any input: relabelling, self-comparison, chance, null calibration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from semwh.analyze import rsa, similarity_matrix, two_vs_two

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def spaces(seed: int, n: int, d: int, coupling: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = coupling * x + rng.standard_normal((n, d))
    return similarity_matrix(x), similarity_matrix(y)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(4, 25),
    coupling=st.floats(0.0, 2.0),
    method=st.sampled_from(["spearman", "pearson", "kendall"]),
)
def test_relabelling_both_spaces_changes_nothing(seed, n, coupling, method) -> None:
    a, b = spaces(seed, n, 5, coupling)
    perm = np.random.default_rng(seed + 1).permutation(n)
    a2, b2 = a[perm][:, perm], b[perm][:, perm]
    assert rsa(a2, b2, method=method).rho == pytest.approx(rsa(a, b, method=method).rho, abs=1e-9)
    assert two_vs_two(a2, b2).n_correct == two_vs_two(a, b).n_correct
    assert (
        two_vs_two(a2, b2, distance="cosine").n_correct
        == two_vs_two(a, b, distance="cosine").n_correct
    )


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 30), d=st.integers(3, 12))
def test_space_against_itself_is_perfect(seed, n, d) -> None:
    a, _ = spaces(seed, n, d, 0.0)
    assert two_vs_two(a, a).accuracy == 1.0
    assert rsa(a, a).rho == pytest.approx(1.0)


def test_independent_spaces_are_at_chance() -> None:
    accuracies = [two_vs_two(*spaces(seed, 60, 10, 0.0)).accuracy for seed in range(12)]
    assert 0.45 < np.mean(accuracies) < 0.55
    assert all(0.3 < acc < 0.7 for acc in accuracies)


def test_rsa_p_values_uniform_under_null() -> None:
    p = [
        rsa(*spaces(seed, 10, 4, 0.0), n_permutations=99, seed=seed).p_value for seed in range(150)
    ]
    assert stats.kstest(p, "uniform").pvalue > 0.001


def test_two_vs_two_p_values_uniform_under_null() -> None:
    p = [
        two_vs_two(*spaces(seed, 9, 4, 0.0), n_permutations=39, seed=seed).p_value
        for seed in range(80)
    ]
    assert stats.kstest(p, "uniform").pvalue > 0.001
