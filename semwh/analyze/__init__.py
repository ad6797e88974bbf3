"""Pure statistics: arrays in, result dataclasses out; no database, no printing.

Typical use (``runs.py`` loads the spaces and stores the results)::

    from semwh.analyze import similarity_matrix, rsa, two_vs_two, benjamini_hochberg

    s_a = similarity_matrix(layer_vectors, labels=concept_ids, space="resnet50/layer3.5")
    s_b = similarity_matrix(word_vectors, labels=concept_ids, space="glove")
    r = rsa(s_a, s_b, n_permutations=1000, seed=7, labels=concept_ids)
    t = two_vs_two(s_a, s_b, n_permutations=1000, seed=7, labels=concept_ids)
    p_fdr = benjamini_hochberg([r.p_value, t.p_value])

A null can also be computed in blocks (on several machines, say) and completed afterwards::

    blocks = permutation_blocks(1000, 250)  # (0, 250), (250, 500), ...
    null = np.concatenate([rsa_null(s_a, s_b, n_permutations=1000, start=i, stop=j, seed=7)
                           for i, j in blocks])  # == r.null, bit for bit
    p = rsa_p_value(r.rho, null)  # == r.p_value

Both matrices must cover the same concepts in the same order (the shared concepts K).
"""

from semwh.analyze._checks import MIN_CONCEPTS
from semwh.analyze.bootstrap import BootstrapCI, bootstrap_rsa, bootstrap_two_vs_two
from semwh.analyze.fdr import benjamini_hochberg
from semwh.analyze.permutation import permutation_blocks
from semwh.analyze.recovery import RecoveryOutcomes, RecoveryResult, recovery
from semwh.analyze.rsa import (
    RSA_METHODS,
    RSAResult,
    kendall_tau_a,
    rsa,
    rsa_null,
    rsa_p_value,
    upper_triangle,
)
from semwh.analyze.similarity import SIMILARITY_METRICS, similarity_matrix
from semwh.analyze.two_vs_two import (
    DISTANCES,
    TIE_TOL,
    TwoVsTwoResult,
    two_vs_two,
    two_vs_two_null,
    two_vs_two_p_value,
)

__all__ = [
    "DISTANCES",
    "MIN_CONCEPTS",
    "RSA_METHODS",
    "SIMILARITY_METRICS",
    "TIE_TOL",
    "BootstrapCI",
    "RSAResult",
    "RecoveryOutcomes",
    "RecoveryResult",
    "TwoVsTwoResult",
    "benjamini_hochberg",
    "bootstrap_rsa",
    "bootstrap_two_vs_two",
    "kendall_tau_a",
    "permutation_blocks",
    "recovery",
    "rsa",
    "rsa_null",
    "rsa_p_value",
    "similarity_matrix",
    "two_vs_two",
    "two_vs_two_null",
    "two_vs_two_p_value",
    "upper_triangle",
]
