"""The compiled inner cross-validation of regression 2 vs 2 against the numpy path it replaces
(the same bits), and against refitting ridge for every pair."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import semwh.analyze
from semwh.analyze import kernels, regression
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


# The statistic as computed before the compiled path: every penalty's inner errors by the numpy
# path, and every pair scored under every penalty (the last better one kept).
def pair_correct_before(
    h: np.ndarray,
    e: np.ndarray,
    t: np.ndarray,
    y_norm2: np.ndarray,
    tie_tol: float,
    centre: bool,
) -> np.ndarray:
    """n x n booleans: whether each pair (i < j) is correct with leave-two-out predictions."""
    et = e - e.mean(axis=1, keepdims=True) if centre else e
    p = t @ t.T  # y_a . y_b
    q = et @ t.T  # e_a . y_b
    g = et @ et.T  # e_a . e_b
    hd = np.diag(h)
    one_i = (1.0 - hd)[:, None]
    one_j = (1.0 - hd)[None, :]
    det = one_i * one_j - h * h
    # Zero only on the diagonal (i = j, never a pair) or for a pair that pins its own fit.
    det = np.where(det == 0.0, np.nan, det)
    alpha_i = one_j / det  # weight of e_i in the residual of i
    alpha_j = one_i / det  # weight of e_j in the residual of j
    beta = h / det  # weight of the other concept's residual
    pd, qd, gd = np.diag(p), np.diag(q), np.diag(g)
    col = slice(None), None
    row = None, slice(None)
    # Prediction of i: y_i - alpha_i e_i - beta e_j; of j: y_j - beta e_i - alpha_j e_j.
    # pred_i . y_i = p_ii - alpha_i q_ii - beta q_ji
    pi_yi = pd[col] - alpha_i * qd[col] - beta * q.T
    # pred_i . y_j = p_ij - alpha_i q_ij - beta q_jj
    pi_yj = p - alpha_i * q - beta * qd[row]
    # pred_j . y_j = p_jj - beta q_ij - alpha_j q_jj
    pj_yj = pd[row] - beta * q - alpha_j * qd[row]
    # pred_j . y_i = p_ji - beta q_ii - alpha_j q_ji
    pj_yi = p.T - beta * qd[col] - alpha_j * q.T
    norm_i = (
        pd[col]
        + alpha_i**2 * gd[col]
        + beta**2 * gd[row]
        - 2 * alpha_i * qd[col]
        - 2 * beta * q.T
        + 2 * alpha_i * beta * g
    )
    norm_j = (
        pd[row]
        + beta**2 * gd[col]
        + alpha_j**2 * gd[row]
        - 2 * beta * q
        - 2 * alpha_j * qd[row]
        + 2 * alpha_j * beta * g
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        si = np.sqrt(norm_i)
        sj = np.sqrt(norm_j)
        yn = np.sqrt(y_norm2)
        c_ii = pi_yi / (si * yn[col])
        c_ij = pi_yj / (si * yn[row])
        c_jj = pj_yj / (sj * yn[row])
        c_ji = pj_yi / (sj * yn[col])
        # d = 1 - cos: d_ii + d_jj < d_ij + d_ji - tol  <=>  c_ij + c_ji + tol < c_ii + c_jj
        return (c_ij + c_ji + tie_tol) < (c_ii + c_jj)


def run_before(problem, perm=None) -> tuple[np.ndarray, np.ndarray]:
    y = problem.y if perm is None else problem.y[perm]
    centre = problem.distance == "pearson"
    t = y - y.mean(axis=1, keepdims=True) if centre else y
    y_norm2 = np.einsum("ij,ij->i", t, t)
    best = np.full((problem.n, problem.n), np.inf)
    chosen = np.full((problem.n, problem.n), -1, dtype=np.int64)
    correct = np.zeros((problem.n, problem.n), dtype=bool)
    for index, h in enumerate(problem.smoother.hats):
        e = y - h @ y
        cv = regression._inner_cv_numpy(h, e @ e.T)
        better = cv < best
        best = np.where(better, cv, best)
        chosen = np.where(better, index, chosen)
        correct = np.where(
            better, pair_correct_before(h, e, t, y_norm2, problem.tie_tol, centre), correct
        )
    return correct & problem.upper, np.where(problem.upper, chosen, -1)


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


@pytest.mark.parametrize("distance", ["cosine", "pearson"])
@pytest.mark.parametrize("case", ["small", "wide", "collinear", "ties", "other"])
def test_the_statistic_and_null_are_those_of_the_code_before(
    monkeypatch: pytest.MonkeyPatch, case: str, distance: str
) -> None:
    # At 4 concepts every penalty predicts an inner concept by the other one's target, so the
    # penalties' errors differ by rounding only: the paths still choose alike (same bits).
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    x, y = spaces(case, seed=5)
    grid = (1e-3, 0.1, 1.0, 1.0, 10.0, 1e3)
    problem = regression._Problem(x, y, distance, grid, 1e-10, None, "A", "B")
    for perm in [None, *ref.permutations(1, len(x), 2)]:
        correct, chosen = problem.run(perm)
        expected_correct, expected_chosen = run_before(problem, perm)
        np.testing.assert_array_equal(correct, expected_correct)
        np.testing.assert_array_equal(chosen, expected_chosen)
    result = regression_two_vs_two(x, y, distance=distance, penalties=grid, n_permutations=2)
    n_pairs = problem.n * (problem.n - 1) // 2
    before = [run_before(problem, p)[0].sum() / n_pairs for p in ref.permutations(0, len(x), 2)]
    np.testing.assert_array_equal(result.null, before)
    assert result.accuracy == run_before(problem)[0].sum() / n_pairs


def test_without_numba_the_numpy_path_runs_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = spaces("collinear", seed=2)
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    expected = regression_two_vs_two(x, y, n_permutations=2)
    monkeypatch.setitem(sys.modules, "semwh.analyze.regression_compiled", None)
    monkeypatch.delattr(semwh.analyze, "regression_compiled")
    monkeypatch.setattr(regression, "_COMPILED", {})
    monkeypatch.setattr(kernels, "_said", [])
    capsys.readouterr()
    got = regression_two_vs_two(x, y, n_permutations=2)
    again = regression_two_vs_two(x, y, n_permutations=2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "compiled kernels unavailable" in lines[0], lines
    for result in (got, again):
        np.testing.assert_array_equal(result.correct, expected.correct)
        np.testing.assert_array_equal(result.null, expected.null)


def test_semwh_kernels_numpy_keeps_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = spaces("collinear", seed=2)
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    monkeypatch.setenv("SEMWH_KERNELS", "numpy")
    monkeypatch.setattr(compiled, "inner_cv", None)  # any call to the compiled path fails
    result = regression_two_vs_two(x, y, n_permutations=2)
    monkeypatch.setenv("SEMWH_KERNELS", "numba")
    with pytest.raises(TypeError):
        regression_two_vs_two(x, y, n_permutations=2)
    assert result.null.shape == (2,)


def test_a_kernel_that_fails_to_compile_falls_back_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from numba.core.errors import TypingError

    x, y = spaces("collinear", seed=2)
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    expected = regression_two_vs_two(x, y, n_permutations=2)

    def broken(h: np.ndarray, g: np.ndarray) -> np.ndarray:
        raise TypingError("cannot compile")

    monkeypatch.setattr(compiled, "inner_cv", broken)
    monkeypatch.setattr(regression, "_COMPILED", {"module": compiled})
    monkeypatch.setattr(kernels, "_said", [])
    capsys.readouterr()
    got = regression_two_vs_two(x, y, n_permutations=2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "cannot compile" in lines[0], lines
    assert regression._COMPILED["module"] is None
    np.testing.assert_array_equal(got.correct, expected.correct)
    np.testing.assert_array_equal(got.null, expected.null)
