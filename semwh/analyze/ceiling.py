"""Representational dissimilarity matrices (RDMs) of several subjects: the group matrix and
the noise ceiling of RSA against it.

The noise ceiling follows rsatoolbox (``boot_noise_ceiling`` over subjects): the subjects'
RDMs are pooled the way the comparison is best served (Spearman: the mean of each subject's
ranked upper triangle; Pearson: the mean of each z-scored upper triangle); the *upper* bound
is the mean over subjects of the correlation of each subject's RDM with the pool of all
subjects, the *lower* bound the mean correlation of each subject's RDM with the pool of the
other subjects (leave one subject out). No model can be expected to beat the upper bound; the
lower bound is what the other subjects predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from semwh.errors import ConfigError, InputError

CEILING_METHODS = ("spearman", "pearson")


@dataclass(frozen=True)
class NoiseCeiling:
    """Lower and upper bounds of the RSA a model can reach against a group of subjects."""

    lower: float
    upper: float
    method: str
    n_subjects: int


def upper_vectors(rdms: np.ndarray) -> np.ndarray:
    """(subjects, n(n-1)/2) upper triangles of a (subjects, n, n) stack, row by row."""
    stack = np.asarray(rdms, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise InputError(f"RDMs have shape {stack.shape}, expected subjects x n x n")
    iu = np.triu_indices(stack.shape[1], 1)
    return stack[:, iu[0], iu[1]]


def _prepared(vectors: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        return stats.rankdata(vectors, axis=1)
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    return centred / centred.std(axis=1, keepdims=True)


def _corr(u: np.ndarray, v: np.ndarray, method: str) -> float:
    if method == "spearman":
        return float(stats.spearmanr(u, v).statistic)
    return float(np.corrcoef(u, v)[0, 1])


def noise_ceiling(rdms: np.ndarray, method: str = "spearman") -> NoiseCeiling:
    """Noise ceiling of RSA against the group of ``rdms`` (subjects x n x n dissimilarities).

    Raises:
        ConfigError: an unknown method, or fewer than two subjects.
        InputError: a stack that is not subjects x n x n.
    """
    if method not in CEILING_METHODS:
        raise ConfigError(
            f"unknown noise-ceiling method {method!r} (choose {', '.join(CEILING_METHODS)})"
        )
    vectors = upper_vectors(rdms)
    n_subjects = vectors.shape[0]
    if n_subjects < 2:
        raise ConfigError("a noise ceiling needs the RDMs of at least two subjects")
    prepared = _prepared(vectors, method)
    pool_all = prepared.mean(axis=0)
    upper, lower = [], []
    for s in range(n_subjects):
        others = np.delete(prepared, s, axis=0).mean(axis=0)
        upper.append(_corr(pool_all, vectors[s], method))
        lower.append(_corr(others, vectors[s], method))
    return NoiseCeiling(
        lower=float(np.mean(lower)),
        upper=float(np.mean(upper)),
        method=method,
        n_subjects=n_subjects,
    )


def group_similarity(rdms: np.ndarray) -> np.ndarray:
    """The similarity matrix RSA and 2 vs 2 compare with: minus the subjects' mean RDM.

    A dissimilarity's negation orders pairs the other way round; every correlation the
    tests use (Spearman, Pearson, Kendall; the Pearson row distance of 2 vs 2) is unchanged
    by the affine map, so no scale needs choosing.
    """
    stack = np.asarray(rdms, dtype=np.float64)
    mean = -stack.mean(axis=0)
    return (mean + mean.T) / 2.0
