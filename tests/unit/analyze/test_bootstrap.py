"""Bootstrap intervals against explicit resampling loops."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import bootstrap_rsa, bootstrap_two_vs_two, similarity_matrix, two_vs_two
from tests.unit.analyze import reference


def pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    return similarity_matrix(x), similarity_matrix(x + rng.standard_normal((n, 5)))


def test_rsa_bootstrap_matches_loop() -> None:
    a, b = pair(9, 0)
    ci = bootstrap_rsa(a, b, n_bootstrap=30, seed=4, method="pearson")
    rng = np.random.default_rng(4)
    expected = []
    for _ in range(30):
        idx = rng.integers(0, 9, size=9)
        u, v = [], []
        for x in range(9):
            for y in range(x + 1, 9):
                if idx[x] != idx[y]:
                    u.append(a[idx[x], idx[y]])
                    v.append(b[idx[x], idx[y]])
        expected.append(reference.pearson(np.array(u), np.array(v)))
    np.testing.assert_allclose(ci.values, expected, atol=1e-9)
    assert ci.estimate == pytest.approx(reference.rsa(a, b, "pearson"))
    assert ci.low <= ci.high and ci.seed == 4 and ci.n_bootstrap == 30


def test_two_vs_two_bootstrap_matches_loop() -> None:
    a, b = pair(10, 1)
    ci = bootstrap_two_vs_two(a, b, n_bootstrap=20, seed=7, level=0.9)
    correct = two_vs_two(a, b, return_pairs=True).pair_correct
    rng = np.random.default_rng(7)
    expected = []
    for _ in range(20):
        counts = np.bincount(rng.integers(0, 10, size=10), minlength=10)
        hits = total = 0.0
        for u in range(10):
            for v in range(u + 1, 10):
                hits += counts[u] * counts[v] * correct[u, v]
                total += counts[u] * counts[v]
        expected.append(hits / total)
    np.testing.assert_allclose(ci.values, expected, atol=1e-12)
    assert ci.level == 0.9
    assert ci.low == pytest.approx(np.quantile(expected, 0.05))
