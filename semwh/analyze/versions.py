"""Versions of the analysis algorithms, recorded with every result.

A stored result is reused only by a request that the same algorithm would answer: bump a
test's version whenever a change to its code can change a stored number or turn a stored
number into an error, so that results of the old algorithm are recomputed rather than reused.

History:
    rsa 1: the first recorded version.
    2v2 1: pairs with constant kept entries counted as not correct.
    2v2 2: such pairs are a DegenerateInputError naming the concepts.
    recovery 1: images without a stored prediction counted with "no word vector".
    recovery 2: they have their own count (n_no_prediction).
    rsa 2, 2v2 3, recovery 3: similarity matrices are computed in fixed tiles of rows (the
        last bits of their entries can differ from one whole product); the RSA statistic is
        summed exactly from integer ranks (Spearman) or with fsum (Pearson).
    cka 1, knn 1, reg2v2 1, diff 1: the first recorded versions.
    knn 2: ties follow the documented rule on every BLAS (similarities rounded to 2^-32, then
        concept order), and the permutation null decides B's ties in the relabelled order.
    rsa 3, 2v2 4 against a target with subjects (an RDM space) only: the statistic is the
        mean over subjects of the comparison with each subject's matrix (rsatoolbox's
        eval_fixed), no longer the comparison with minus the subjects' mean matrix. Results
        against vector spaces keep rsa 2 and 2v2 3 (their numbers did not change).
    diff 2 between results against a target with subjects: the statistic resampled is the
        mean over subjects; paired tests over subjects are stored beside it.
    image_scores 1: the first recorded version (per-image scores against the concept
        centroids, ties against the image).
"""

from __future__ import annotations

#: Versions of what is not a measure (recovery, differences). Each measure declares its own
#: (``version``, ``subject_version`` in its module of :mod:`semwh.measures`; the history
#: above covers the built-in ones); :func:`semwh.measures.analysis_version` reads both.
ANALYSIS_VERSIONS: dict[str, int] = {
    "recovery": 3,
    "diff": 1,
    "image_scores": 1,
}


#: Versions of the analyses whose algorithm against a target with subjects differs.
SUBJECT_TARGET_VERSIONS: dict[str, int] = {"diff": 2}


def analysis_version(test: str, target: str | None = None) -> int:
    """The current version of recovery or diff; ``target`` is how space B is compared
    (``subjects:...`` for an RDM space, None for vectors). Measures:
    :func:`semwh.measures.analysis_version`."""
    if target is not None and target.startswith("subjects") and test in SUBJECT_TARGET_VERSIONS:
        return SUBJECT_TARGET_VERSIONS[test]
    return ANALYSIS_VERSIONS[test]
