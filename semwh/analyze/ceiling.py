"""Representational dissimilarity matrices (RDMs) of several subjects: the group matrix and
the noise ceiling of RSA against it.

Model and ceiling share one scale: a result against an RDM is the mean over subjects of the
comparison with each subject's matrix, and the ceiling is computed with the same comparator.
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

from semwh.errors import ConfigError

CEILING_METHODS = ("spearman", "pearson")


@dataclass(frozen=True)
class NoiseCeiling:
    """Lower and upper bounds of the RSA a model can reach against a group of subjects."""

    lower: float
    upper: float
    method: str
    n_subjects: int


def noise_ceiling(rdms: np.ndarray, method: str = "spearman") -> NoiseCeiling:
    """Noise ceiling of RSA against the group of ``rdms`` (subjects x n x n dissimilarities),
    with the same comparator as the model side (:func:`semwh.analyze.subjects.subject_ceiling`).

    Raises:
        ConfigError: an unknown method, or fewer than two subjects.
        InputError: a stack that is not subjects x n x n.
    """
    if method not in CEILING_METHODS:
        raise ConfigError(
            f"unknown noise-ceiling method {method!r} (choose {', '.join(CEILING_METHODS)})"
        )
    from semwh.analyze.subjects import Comparator, subject_ceiling

    ceiling = subject_ceiling(np.asarray(rdms, dtype=np.float64), Comparator("rsa", method))
    return NoiseCeiling(
        lower=ceiling.lower, upper=ceiling.upper, method=method, n_subjects=ceiling.n_subjects
    )
