"""Regression 2 vs 2 (Mitchell et al., 2008): predict space B from space A, two concepts out.

For every pair i < j of the n concepts, a ridge regression with an unpenalised intercept is
fitted from the vectors of A to the vectors of B on the other n - 2 concepts and predicts
b^_i and b^_j. The pair is correct iff

    d(b^_i, b_i) + d(b^_j, b_j) < d(b^_i, b_j) + d(b^_j, b_i) - tie_tol

with d the cosine distance (option: Pearson distance, 1 - Pearson r). Accuracy is the mean
over all n(n-1)/2 pairs; chance is 0.5.

The ridge penalty of each pair is chosen by leave-one-out cross-validation inside its n - 2
training concepts: for each penalty of a fixed grid, each training concept k is predicted by
the ridge fitted on the other n - 3, and the penalty with the smallest summed squared error
(over k and every feature of B) wins; equal errors go to the first penalty of the grid. The
grid is ``penalties`` times the mean squared norm of the centred vectors of A, tr(Xc Xc')/n,
so that it follows the scale of A.

Nothing is refitted. A ridge with an unpenalised intercept is a linear smoother,
Y^ = H Y with H = 11'/n + Kc (Kc + lambda I)^-1 (Kc = Xc Xc', one eigendecomposition for all
penalties), and leaving out a set S of concepts changes its residuals to
(I - H_SS)^-1 e_S, where e = Y - H Y are the residuals of the fit on all concepts. With
|S| = 2 this gives the predictions of every pair; with S = {i, j, k} (a 3 x 3 inverse per
triple) the inner leave-one-out errors of every pair, computed from the Gram matrices of the
residuals and targets only. The permutation test relabels the concepts of B.

The inner errors are the O(n^3) part (one term per pair and training concept, for each
penalty). With numba installed they run compiled (:mod:`semwh.analyze.regression_compiled`),
term for term the arithmetic of the numpy path and summed in numpy's pairwise order, so both
paths give the same bits; without numba the numpy path runs (one line on stderr says so).
``SEMWH_KERNELS`` chooses as for the permutation kernels (:mod:`semwh.analyze.kernels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numexpr
import numpy as np

from semwh.analyze import kernels
from semwh.analyze._checks import name_concepts
from semwh.analyze._matrices import as_matrix_pair
from semwh.analyze.permutation import (
    check_block,
    check_n_permutations,
    make_rng,
    null_from,
    permutation_p_value,
)
from semwh.config import kernel_choice
from semwh.errors import ConfigError, DegenerateInputError

REGRESSION_DISTANCES = ("cosine", "pearson")

#: Penalties of the inner cross-validation, as multiples of tr(Xc Xc') / n.
DEFAULT_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)

#: A pair is correct only by more than this margin (as in the 2 vs 2 test).
REGRESSION_TIE_TOL = 1e-10

#: From this many concepts on, the inner cross-validation runs compiled (when numba is there).
COMPILED_FROM = 150


@dataclass(frozen=True)
class RegressionResult:
    """Outcome of :func:`regression_two_vs_two`.

    Attributes:
        accuracy: fraction of the n(n-1)/2 pairs that are correct.
        p_value: permutation p-value, (1 + #{null >= accuracy}) / (1 + N); None when N = 0.
        null: the N permuted accuracies, in the order the permutations were drawn.
        n_concepts: number of concepts n.
        n_pairs: n(n-1)/2.
        n_permutations: N.
        seed: seed of the permutations (None when a Generator was passed in).
        distance: "cosine" or "pearson".
        penalties: the absolute ridge penalties of the grid.
        chosen: n x n matrix of the grid index each pair (i < j, upper triangle) chose;
            -1 elsewhere.
        correct: n x n boolean matrix, True at (i, j), i < j, for a correct pair.
    """

    accuracy: float
    p_value: float | None
    null: np.ndarray = field(repr=False)
    n_concepts: int
    n_pairs: int
    n_permutations: int
    seed: int | None
    distance: str
    penalties: tuple[float, ...]
    chosen: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)


def penalty_grid(x: np.ndarray, penalties: Sequence[float]) -> np.ndarray:
    """The absolute penalties: ``penalties`` times the mean squared norm of centred rows."""
    xc = x - x.mean(axis=0)
    scale = float(np.sum(xc * xc)) / x.shape[0]
    return np.asarray([float(p) * scale for p in penalties], dtype=np.float64)


def _check_penalties(penalties: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(p) for p in penalties)
    if not values or not all(np.isfinite(p) and p > 0 for p in values):
        raise ConfigError(
            f"ridge penalties must be one or more positive numbers, got {list(penalties)!r}"
        )
    return values


class _Smoother:
    """The hat matrices of one source space, one per penalty of the grid."""

    def __init__(
        self, x: np.ndarray, factors: tuple[float, ...], names: list[str], space: str
    ) -> None:
        n = x.shape[0]
        xc = x - x.mean(axis=0)
        gram = xc @ xc.T
        if not np.trace(gram) > 0:
            raise DegenerateInputError(
                f"space {space!r}: every concept has the same vector, so nothing can be "
                f"predicted from it; concepts: {name_concepts(names, np.arange(n))}"
            )
        values, vectors = np.linalg.eigh((gram + gram.T) / 2.0)
        values = np.clip(values, 0.0, None)
        self.penalties = penalty_grid(x, factors)
        self.hats = [
            (vectors * (values / (values + lam))) @ vectors.T + 1.0 / n for lam in self.penalties
        ]


def _targets(y: np.ndarray, distance: str, names: list[str], space: str) -> np.ndarray:
    """The target rows the distance compares: centred across features for Pearson."""
    t = y - y.mean(axis=1, keepdims=True) if distance == "pearson" else y
    norms = np.linalg.norm(t, axis=1)
    scale = np.abs(y).max(axis=1)
    bad = np.flatnonzero(norms <= 1e-10 * np.sqrt(y.shape[1]) * np.maximum(scale, 1e-300))
    if bad.size:
        what = "constant" if distance == "pearson" else "all-zero"
        raise DegenerateInputError(
            f"space {space!r}: {bad.size} concept(s) have {what} vectors, so their "
            f"{distance} distance is undefined: {name_concepts(names, bad)}; drop them"
        )
    return t


# Row k of adj(M) for M = [[a, x, y], [x, b, z], [y, z, c]] is (u, v, w); the squared norm of
# (u e_i + v e_j + w e_k) / det(M), with the Gram entries of the residuals, in one pass.
_U = "(x * z - b * y)"
_V = "(x * y - a * z)"
_W = "(a * b - x * x)"
_DET = "(a * (b * c - z * z) + x * (y * z - x * c) + y * (x * z - b * y))"
_LOO_ERROR = (
    f"({_U} * {_U} * gii + {_V} * {_V} * gjj + {_W} * {_W} * gkk + 2 * {_U} * {_V} * gij"
    f" + 2 * {_U} * {_W} * gik + 2 * {_V} * {_W} * gjk) / ({_DET} * {_DET})"
)


def _inner_cv_numpy(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """n x n matrix: at (i, j), i < j, the summed squared leave-one-out error of the ridge
    inside the training concepts of pair (i, j); the rest is +inf.

    For S = (i, j, k) and M = I - H_SS, the residual of k left out of the training set of
    (i, j) is row k of M^-1 e_S; its squared norm needs only G = E E'.
    """
    n = h.shape[0]
    out = np.full((n, n), np.inf)
    hd = np.diag(h)
    gd = np.diag(g)
    for i in range(n - 1):
        rest = slice(i + 1, n)
        env = {
            "a": 1.0 - hd[i],
            "b": (1.0 - hd[rest])[:, None],
            "c": (1.0 - hd)[None, :],
            "x": -h[i, rest][:, None],
            "y": -h[i][None, :],
            "z": -h[rest],
            "gii": gd[i],
            "gjj": gd[rest][:, None],
            "gkk": gd[None, :],
            "gij": g[i, rest][:, None],
            "gik": g[i][None, :],
            "gjk": g[rest],
        }
        err = numexpr.evaluate(_LOO_ERROR, local_dict=env)
        # k = i and k = j are not training concepts of the pair (and M is singular there).
        err[:, i] = 0.0
        m = n - i - 1
        err[np.arange(m), np.arange(i + 1, n)] = 0.0
        out[i, rest] = err.sum(axis=1)
    return out


_COMPILED: dict[str, Any] = {}


def _compiled_inner_cv() -> Any:
    """The compiled inner cross-validation, or None (numba missing: one line says so, once)."""
    if "module" not in _COMPILED:
        try:
            from semwh.analyze import regression_compiled
        except ImportError as exc:
            kernels.fallback(exc)
            _COMPILED["module"] = None
        else:
            _COMPILED["module"] = regression_compiled
    return _COMPILED["module"]


def _inner_cv(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The inner leave-one-out errors of every pair: by the compiled kernel where
    ``SEMWH_KERNELS`` allows it (``auto``: from ``COMPILED_FROM`` concepts on; ``numba``: at
    any size) and numba is installed. Both paths give the same bits; small problems keep the
    numpy path by default, as they would spend more time loading the kernel."""
    choice = kernel_choice()
    if choice == "numba" or (choice == "auto" and h.shape[0] >= COMPILED_FROM):
        module = _compiled_inner_cv()
        if module is not None:
            try:
                return module.inner_cv(h, g)
            except Exception as exc:
                if not kernels.is_compile_error(exc):
                    raise
                kernels.fallback(exc)
                _COMPILED["module"] = None
    return _inner_cv_numpy(h, g)


def _pair_correct(
    h: np.ndarray,
    e: np.ndarray,
    t: np.ndarray,
    y_norm2: np.ndarray,
    tie_tol: float,
    centre: bool,
    i: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """Booleans: whether each pair (i[m], j[m]) is correct with leave-two-out predictions."""
    et = e - e.mean(axis=1, keepdims=True) if centre else e
    p = t @ t.T  # y_a . y_b
    q = et @ t.T  # e_a . y_b
    g = et @ et.T  # e_a . e_b
    hd = np.diag(h)
    hij = h[i, j]
    one_i = (1.0 - hd)[i]
    one_j = (1.0 - hd)[j]
    det = one_i * one_j - hij * hij
    # Zero only for a pair that pins its own fit.
    det = np.where(det == 0.0, np.nan, det)
    alpha_i = one_j / det  # weight of e_i in the residual of i
    alpha_j = one_i / det  # weight of e_j in the residual of j
    beta = hij / det  # weight of the other concept's residual
    pd, qd, gd = np.diag(p), np.diag(q), np.diag(g)
    p_ij, p_ji, q_ij, q_ji, g_ij = p[i, j], p[j, i], q[i, j], q[j, i], g[i, j]
    # Prediction of i: y_i - alpha_i e_i - beta e_j; of j: y_j - beta e_i - alpha_j e_j.
    # pred_i . y_i = p_ii - alpha_i q_ii - beta q_ji
    pi_yi = pd[i] - alpha_i * qd[i] - beta * q_ji
    # pred_i . y_j = p_ij - alpha_i q_ij - beta q_jj
    pi_yj = p_ij - alpha_i * q_ij - beta * qd[j]
    # pred_j . y_j = p_jj - beta q_ij - alpha_j q_jj
    pj_yj = pd[j] - beta * q_ij - alpha_j * qd[j]
    # pred_j . y_i = p_ji - beta q_ii - alpha_j q_ji
    pj_yi = p_ji - beta * qd[i] - alpha_j * q_ji
    norm_i = (
        pd[i]
        + alpha_i**2 * gd[i]
        + beta**2 * gd[j]
        - 2 * alpha_i * qd[i]
        - 2 * beta * q_ji
        + 2 * alpha_i * beta * g_ij
    )
    norm_j = (
        pd[j]
        + beta**2 * gd[i]
        + alpha_j**2 * gd[j]
        - 2 * beta * q_ij
        - 2 * alpha_j * qd[j]
        + 2 * alpha_j * beta * g_ij
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        si = np.sqrt(norm_i)
        sj = np.sqrt(norm_j)
        yn = np.sqrt(y_norm2)
        c_ii = pi_yi / (si * yn[i])
        c_ij = pi_yj / (si * yn[j])
        c_jj = pj_yj / (sj * yn[j])
        c_ji = pj_yi / (sj * yn[i])
        # d = 1 - cos: d_ii + d_jj < d_ij + d_ji - tol  <=>  c_ij + c_ji + tol < c_ii + c_jj
        return (c_ij + c_ji + tie_tol) < (c_ii + c_jj)


class _Problem:
    def __init__(self, x, y, distance, penalties, tie_tol, labels, space_a, space_b) -> None:
        if distance not in REGRESSION_DISTANCES:
            raise ConfigError(
                f"unknown regression 2 vs 2 distance {distance!r} "
                f"(choose {', '.join(REGRESSION_DISTANCES)})"
            )
        if not (isinstance(tie_tol, int | float) and 0 <= float(tie_tol) < 1):
            raise ConfigError(f"tie tolerance must be in [0, 1), got {tie_tol!r}")
        a, b, names = as_matrix_pair(x, y, labels, space_a, space_b)
        self.n = a.shape[0]
        self.factors = _check_penalties(penalties)
        self.smoother = _Smoother(a, self.factors, names, space_a)
        self.y = b
        self.distance = distance
        self.tie_tol = float(tie_tol)
        _targets(b, distance, names, space_b)
        self.upper = np.triu(np.ones((self.n, self.n), dtype=bool), 1)

    def run(self, perm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        y = self.y if perm is None else self.y[perm]
        centre = self.distance == "pearson"
        t = y - y.mean(axis=1, keepdims=True) if centre else y
        y_norm2 = np.einsum("ij,ij->i", t, t)
        best = np.full((self.n, self.n), np.inf)
        chosen = np.full((self.n, self.n), -1, dtype=np.int64)
        residuals = []
        for index, h in enumerate(self.smoother.hats):
            e = y - h @ y
            cv = _inner_cv(h, e @ e.T)
            better = cv < best
            best = np.where(better, cv, best)
            chosen = np.where(better, index, chosen)
            residuals.append(e)
        chosen = np.where(self.upper, chosen, -1)
        # Each pair is scored once, with the penalty it chose.
        correct = np.zeros((self.n, self.n), dtype=bool)
        for index, (h, e) in enumerate(zip(self.smoother.hats, residuals, strict=True)):
            i, j = np.nonzero(chosen == index)
            if i.size:
                correct[i, j] = _pair_correct(h, e, t, y_norm2, self.tie_tol, centre, i, j)
        return correct, chosen

    def accuracy(self, perm: np.ndarray | None = None) -> float:
        correct, _ = self.run(perm)
        return float(np.count_nonzero(correct)) / (self.n * (self.n - 1) // 2)


def regression_two_vs_two(
    x: np.ndarray,
    y: np.ndarray,
    *,
    distance: str = "cosine",
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    tie_tol: float = REGRESSION_TIE_TOL,
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
) -> RegressionResult:
    """Leave-two-concepts-out ridge regression from A to B, scored by the 2 vs 2 rule.

    Args:
        x: n x d_a vectors of the predicting space A, one row per concept.
        y: n x d_b vectors of the predicted space B, same concepts in the same order.
        distance: "cosine" (default) or "pearson" distance between predicted and true rows.
        penalties: grid of the inner cross-validation, in multiples of tr(Xc Xc') / n.
        tie_tol: a pair is correct only by more than this margin.
        n_permutations: number N of relabellings of B's concepts; 0 skips the test. Each
            permutation costs as much as the statistic (every pair's penalty is chosen anew).
        seed: integer seed (recorded) or a numpy Generator (recorded as None).
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.

    Raises:
        ConfigError: unknown distance, bad penalties, tie tolerance or permutation settings.
        InputError: matrices that are not n x d over the same number of concepts.
        DegenerateInputError: fewer than 4 concepts, NaN/inf, a source space with a single
            vector, or target vectors whose distance is undefined.
    """
    n_permutations = check_n_permutations(n_permutations)
    problem = _Problem(x, y, distance, penalties, tie_tol, labels, space_a, space_b)
    rng, recorded = make_rng(seed)
    correct, chosen = problem.run()
    n_pairs = problem.n * (problem.n - 1) // 2
    stat = float(np.count_nonzero(correct)) / n_pairs
    null = null_from(problem.accuracy, rng, problem.n, 0, n_permutations, 1)
    return RegressionResult(
        accuracy=stat,
        p_value=permutation_p_value(stat, null) if n_permutations else None,
        null=null,
        n_concepts=problem.n,
        n_pairs=n_pairs,
        n_permutations=n_permutations,
        seed=recorded,
        distance=distance,
        penalties=tuple(float(p) for p in problem.smoother.penalties),
        chosen=chosen,
        correct=correct,
    )


def regression_null(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int,
    start: int = 0,
    stop: int | None = None,
    distance: str = "cosine",
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    tie_tol: float = REGRESSION_TIE_TOL,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
) -> np.ndarray:
    """Null accuracies of permutations ``start..stop-1`` of :func:`regression_two_vs_two`."""
    start, stop = check_block(start, stop, n_permutations)
    problem = _Problem(x, y, distance, penalties, tie_tol, labels, space_a, space_b)
    rng, _ = make_rng(seed)
    return null_from(problem.accuracy, rng, problem.n, start, stop, 1)
