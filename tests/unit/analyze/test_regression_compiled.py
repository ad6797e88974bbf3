"""The compiled inner cross-validation of regression 2 vs 2 against the numpy path it replaces
(the same bits), and against refitting ridge for every pair."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import semwh.analyze
from semwh.analyze import regression
from semwh.analyze.regression import DEFAULT_PENALTIES, regression_two_vs_two
from tests.unit.analyze import reference as ref

compiled = pytest.importorskip("semwh.analyze.regression_compiled")


def spaces(case: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, d_a, d_b = {"small": (4, 3, 5), "wide": (12, 30, 6), "blocks": (140, 6, 4)}.get(
        case, (23, 5, 7)
    )
    x = rng.standard_normal((n, d_a))
    y = x @ rng.standard_normal((d_a, d_b)) + 2.0 * rng.standard_normal((n, d_b))
    if case == "collinear":
        x[:, 1] = 2.0 * x[:, 0]
        x[:, 2] = x[:, 0] - x[:, 3]
    if case == "ties":  # repeated concepts in both spaces: equal rows of H, equal targets
        x[5], y[5] = x[4], y[4]
        x[9] = x[8]
        y[12] = y[11]
    return x, y


def hats_and_grams(x: np.ndarray, y: np.ndarray, penalties=DEFAULT_PENALTIES):
    names = [str(i) for i in range(len(x))]
    for h in regression._Smoother(x, tuple(penalties), names, "A").hats:
        e = y - h @ y
        yield h, e @ e.T


@pytest.mark.parametrize("case", ["small", "wide", "collinear", "ties", "blocks"])
def test_compiled_inner_cv_is_the_numpy_path_bit_for_bit(case: str) -> None:
    x, y = spaces(case)
    for h, g in hats_and_grams(x, y):
        expected = regression._inner_cv_numpy(h, g)
        np.testing.assert_array_equal(compiled.inner_cv(h, g, jobs=1), expected)
        np.testing.assert_array_equal(compiled.inner_cv(h, g, jobs=3), expected)


def test_compiled_pairwise_sum_is_numpys_sum() -> None:
    rng = np.random.default_rng(1)
    tasks, values = np.empty((192, 3), dtype=np.int64), np.empty(96)
    for n in [1, 7, 8, 9, 127, 128, 129, 136, 257, 1000, 4099]:
        a = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, size=n)
        assert compiled._pairwise_sum(a, n, tasks, values) == a.sum()


@pytest.mark.parametrize("distance", ["cosine", "pearson"])
@pytest.mark.parametrize("case", ["wide", "collinear", "ties"])
def test_compiled_path_equals_a_per_pair_refit(
    monkeypatch: pytest.MonkeyPatch, distance: str, case: str
) -> None:
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    x, y = spaces(case, seed=3)
    x, y = x[:9], y[:9]
    n = len(x)
    grid = (1e-3, 0.1, 1.0, 1.0, 10.0, 1e3)  # a repeated penalty: equal errors, first wins
    result = regression_two_vs_two(x, y, distance=distance, penalties=grid)
    correct, chosen = ref.regression_two_vs_two(x, y, list(grid), distance)
    np.testing.assert_array_equal(result.correct, correct)
    np.testing.assert_array_equal(result.chosen, chosen)
    assert 3 not in chosen
    assert result.accuracy == correct.sum() / (n * (n - 1) // 2)


@pytest.mark.parametrize(
    ("case", "distance"), [("ties", "cosine"), ("ties", "pearson"), ("small", "cosine")]
)
def test_compiled_and_numpy_paths_give_the_same_decisions_statistic_and_null(
    monkeypatch: pytest.MonkeyPatch, case: str, distance: str
) -> None:
    # At 4 concepts every penalty predicts an inner concept by the other one's target, so the
    # penalties' errors differ by rounding only: the paths still choose alike (same bits).
    x, y = spaces(case, seed=5)
    results = []
    for start in (4, 10**9):  # compiled, then numpy
        monkeypatch.setattr(regression, "COMPILED_FROM", start)
        results.append(regression_two_vs_two(x, y, distance=distance, n_permutations=3))
    fast, slow = results
    np.testing.assert_array_equal(fast.correct, slow.correct)
    np.testing.assert_array_equal(fast.chosen, slow.chosen)
    assert fast.accuracy == slow.accuracy
    np.testing.assert_array_equal(fast.null, slow.null)
    assert len(set(fast.chosen[np.triu_indices(len(x), 1)])) > 1 or case == "small"


def test_without_numba_the_numpy_path_runs_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, y = spaces("collinear", seed=2)
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    expected = regression_two_vs_two(x, y, n_permutations=2)
    monkeypatch.setitem(sys.modules, "semwh.analyze.regression_compiled", None)
    monkeypatch.delattr(semwh.analyze, "regression_compiled")
    monkeypatch.setattr(regression, "_WARNED", [])
    with pytest.warns(RuntimeWarning, match="numba is not installed") as caught:
        got = regression_two_vs_two(x, y, n_permutations=2)
    assert len(caught) == 1
    np.testing.assert_array_equal(got.correct, expected.correct)
    np.testing.assert_array_equal(got.null, expected.null)
