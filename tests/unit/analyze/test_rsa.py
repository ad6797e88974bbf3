"""RSA against by-hand values, a scipy loop, rsatoolbox, and its permutation null."""

from __future__ import annotations

import numpy as np
import pytest
from rsatoolbox.rdm import RDMs, compare
from scipy import stats

from semwh.analyze import kendall_tau_a, rsa, similarity_matrix
from semwh.errors import DegenerateInputError, InputError
from tests.unit.analyze import reference


def from_upper(values: list[float], n: int) -> np.ndarray:
    s = np.eye(n)
    s[np.triu_indices(n, 1)] = values
    return np.triu(s, 1) + np.triu(s, 1).T + np.eye(n)


def random_pair(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    a = similarity_matrix(x)
    b = similarity_matrix(x + rng.standard_normal((n, 6)))
    if ties:
        a = np.round(a, 1)
        b = np.round(b, 1)
        np.fill_diagonal(a, 1.0)
        np.fill_diagonal(b, 1.0)
    return a, b


def test_by_hand() -> None:
    # Upper triangles 1..6 and 1,2,3,4,6,5: one swapped neighbour pair.
    a = from_upper([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 4)
    b = from_upper([0.1, 0.2, 0.3, 0.4, 0.6, 0.5], 4)
    # Spearman: 1 - 6 * sum d^2 / (m (m^2 - 1)) = 1 - 6 * 2 / (6 * 35).
    assert rsa(a, b).rho == pytest.approx(1 - 12 / 210, abs=1e-12)
    # Tau-a: one discordant pair of 15.
    assert rsa(a, b, method="kendall").rho == pytest.approx(13 / 15, abs=1e-12)
    assert rsa(a, a, method="pearson").rho == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
@pytest.mark.parametrize("n,ties", [(4, False), (7, True), (15, False), (15, True)])
def test_matches_reference_and_rsatoolbox(method: str, n: int, ties: bool) -> None:
    a, b = random_pair(n, seed=n + 31 * ties, ties=ties)
    rho = rsa(a, b, method=method).rho
    assert rho == pytest.approx(reference.rsa(a, b, method), abs=1e-9)
    toolbox = {"spearman": "spearman", "pearson": "corr", "kendall": "tau-a"}[method]
    # rsatoolbox compares dissimilarities; 1 - S preserves every comparison's value.
    expected = compare(RDMs(1 - a[None]), RDMs(1 - b[None]), method=toolbox)[0, 0]
    assert rho == pytest.approx(expected, abs=1e-9)


def test_kendall_tau_a_counts_ties_as_neither() -> None:
    u = [1.0, 1.0, 2.0, 3.0, 3.0, 0.5]
    v = [2.0, 1.0, 1.0, 3.0, 4.0, 4.0]
    assert kendall_tau_a(np.array(u), np.array(v)) == pytest.approx(reference.tau_a(u, v))


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_null_matches_relabelling_loop(method: str) -> None:
    n, count, seed = 7, 25, 11
    a, b = random_pair(n, seed=3, ties=True)
    result = rsa(a, b, method=method, n_permutations=count, seed=seed, batch_size=4)
    expected = [
        reference.rsa(a, reference.relabel(b, p), method)
        for p in reference.permutations(seed, n, count)
    ]
    np.testing.assert_allclose(result.null, expected, atol=1e-9)
    assert result.p_value == pytest.approx(reference.p_value(result.rho, expected))
    assert (result.n_permutations, result.seed, result.n_concepts) == (count, seed, n)


def test_null_does_not_depend_on_batching_or_threads() -> None:
    a, b = random_pair(12, seed=5)
    one = rsa(a, b, n_permutations=40, seed=2, batch_size=1, n_jobs=1)
    many = rsa(a, b, n_permutations=40, seed=2, batch_size=7, n_jobs=3)
    np.testing.assert_array_equal(one.null, many.null)
    assert rsa(a, b, n_permutations=40, seed=np.random.default_rng(2)).seed is None


def test_strong_relation_is_significant() -> None:
    a, b = random_pair(20, seed=8)
    result = rsa(a, b, n_permutations=199, seed=0)
    assert result.rho > 0.3
    assert result.p_value == pytest.approx(1 / 200)


def test_degenerate_inputs() -> None:
    a, b = random_pair(6, seed=1)
    b[3, 2] = np.nan
    labels = [f"n{i:02d}" for i in range(6)]
    with pytest.raises(DegenerateInputError, match="'words'.*n02, n03|'words'.*n03"):
        rsa(a, b, labels=labels, space_b="words")
    flat = np.ones((5, 5))
    with pytest.raises(DegenerateInputError, match="all 10 pairwise similarities are equal"):
        rsa(flat, flat, space_a="x")
    with pytest.raises(InputError, match="differ in size"):
        rsa(np.eye(5), np.eye(6))


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_null_matches_scipy_on_a_larger_space(method: str) -> None:
    """Float32 storage of the ranks (exact) and float64 values give scipy's statistics."""
    n, count, seed = 45, 6, 4
    a, b = random_pair(n, seed=12, ties=True)
    result = rsa(a, b, method=method, n_permutations=count, seed=seed)
    iu = np.triu_indices(n, 1)
    corr = stats.spearmanr if method == "spearman" else stats.pearsonr
    expected = [
        corr(a[iu], b[np.ix_(p, p)][iu]).statistic for p in reference.permutations(seed, n, count)
    ]
    np.testing.assert_allclose(result.null, expected, atol=1e-12, rtol=0)
