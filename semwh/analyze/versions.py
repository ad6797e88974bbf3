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
"""

from __future__ import annotations

ANALYSIS_VERSIONS: dict[str, int] = {
    "rsa": 2,
    "2v2": 3,
    "recovery": 3,
    "cka": 1,
    "knn": 2,
    "reg2v2": 1,
    "diff": 1,
}


def analysis_version(test: str) -> int:
    """The current version of ``test``'s algorithm (rsa, 2v2, recovery, cka, knn or reg2v2)."""
    return ANALYSIS_VERSIONS[test]
