"""A comparison's statistic on concept resamples, for every test (a peak layer's depth interval).

The peak-layer test (:func:`semwh.runs.grid.peak_layer`) asks which layer wins on each
resample of the concepts, so every layer must see the same resamples: resample ``t`` draws
``rng.integers(0, n, size=n)`` (n concepts with replacement) as the ``t``-th draw of
``numpy.random.default_rng(seed)``, the draws of the RSA and 2 vs 2 concept bootstrap
(:func:`semwh.analyze.bootstrap.bootstrap_rsa`), so column ``t`` of every layer's values is
the same resample.

Duplicates. RSA and 2 vs 2 leave out the pairs of two copies of one concept and count the
other pairs as often as they are drawn (:func:`semwh.runs.comparison.concept_bootstrap_values`).
The vector measures take each concept drawn once: the distinct concepts of the resample, in
concept order. A copy would be its own nearest neighbour in both spaces (k-NN), a kernel
entry equal to its own norm (CKA), or a training row equal to the held-out one (regression
2 vs 2): agreement that says nothing about the structure and that favours some layers over
others. A resample the measure cannot take (fewer than four distinct concepts, fewer than
``k + 1`` for k-NN, a constant vector) is NaN, which the interval leaves out as it does a
degenerate RSA resample.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from semwh.analyze import MIN_CONCEPTS
from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs.comparison import concept_bootstrap_values, run_comparison
from semwh.runs.options import TESTS
from semwh.runs.provenance import concepts_sha256
from semwh.runs.records import ComparisonSpec


def resampled_statistics(spec: ComparisonSpec, n_bootstrap: int, seed: int) -> np.ndarray:
    """The statistic of ``spec`` on ``n_bootstrap`` concept resamples drawn from ``seed``.

    Every spec over the same concepts gets the same resamples (see the module's docstring,
    also for how a concept drawn twice is treated); NaN where a resample is degenerate.
    """
    if spec.options.test in TESTS:
        return concept_bootstrap_values(spec, n_bootstrap, seed)
    rng = np.random.default_rng(seed)
    n = spec.n_concepts
    # The statistic alone: no null, hence no seed.
    bare = replace(spec, options=replace(spec.options, permutations=0, seed=None))
    values = np.full(n_bootstrap, np.nan)
    for t in range(n_bootstrap):
        rows = np.unique(rng.integers(0, n, size=n))
        if rows.size < MIN_CONCEPTS:
            continue
        wnids = tuple(spec.wnids[i] for i in rows)
        resample = replace(
            bare,
            a=spec.a[rows],
            b=spec.b[rows],
            wnids=wnids,
            concepts_sha256=concepts_sha256(wnids),
        )
        try:
            values[t] = run_comparison(resample).statistic
        except (DegenerateInputError, ConfigError):
            # Too few distinct concepts for the measure's options (k-NN's k), or a vector
            # constant over the resample: NaN, as a degenerate RSA resample.
            continue
    return values
