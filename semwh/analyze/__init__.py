"""Pure statistics: arrays in, result dataclasses out; no database, no printing.

Typical use (``runs.py`` loads the spaces and stores the results)::

    from semwh.analyze import similarity_matrix, rsa, two_vs_two, benjamini_hochberg

    s_a = similarity_matrix(layer_vectors, labels=wnids, space="resnet50/layer3.5")
    s_b = similarity_matrix(word_vectors, labels=wnids, space="glove")
    r = rsa(s_a, s_b, n_permutations=1000, seed=7, labels=wnids)
    t = two_vs_two(s_a, s_b, n_permutations=1000, seed=7, labels=wnids)
    p_fdr = benjamini_hochberg([r.p_value, t.p_value])

Both matrices must cover the same concepts in the same order (the shared concepts K).
"""

from semwh.analyze.bootstrap import BootstrapCI, bootstrap_rsa, bootstrap_two_vs_two
from semwh.analyze.fdr import benjamini_hochberg
from semwh.analyze.recovery import RecoveryOutcomes, RecoveryResult, recovery
from semwh.analyze.rsa import RSA_METHODS, RSAResult, kendall_tau_a, rsa, upper_triangle
from semwh.analyze.similarity import SIMILARITY_METRICS, similarity_matrix
from semwh.analyze.two_vs_two import DISTANCES, TIE_TOL, TwoVsTwoResult, two_vs_two

__all__ = [
    "DISTANCES",
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
    "recovery",
    "rsa",
    "similarity_matrix",
    "two_vs_two",
    "upper_triangle",
]
