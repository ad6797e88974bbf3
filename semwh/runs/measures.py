"""Vector-based measures between two stored spaces: linear CKA, mutual k-NN alignment and
regression 2 vs 2.

They share the comparison machinery of :mod:`semwh.runs.comparison` (a spec of two spaces
over their shared concepts, a pure run, storage with provenance, reuse of identical results)
and differ only in the statistic: this module maps a spec with :class:`MeasureOptions` to
the pure functions of :mod:`semwh.analyze`. Their rows live in ``results_measures``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from semwh.analyze.cka import cka_null, linear_cka
from semwh.analyze.knn import DEFAULT_K, knn_null, mutual_knn
from semwh.analyze.regression import (
    DEFAULT_PENALTIES,
    REGRESSION_TIE_TOL,
    regression_null,
    regression_two_vs_two,
)
from semwh.runs.options import MeasureOptions
from semwh.runs.records import ComparisonSpec


def _common(spec: ComparisonSpec) -> dict[str, Any]:
    opts = spec.options
    return dict(
        labels=list(spec.wnids),
        space_a=spec.space_a,
        space_b=spec.space_b,
        seed=opts.seed if opts.seed is not None else 0,
    )


def _settings(opts: MeasureOptions) -> dict[str, Any]:
    if opts.test == "cka":
        return {"estimator": opts.estimator}
    if opts.test == "knn":
        return {"k": opts.k}
    return {"distance": opts.distance, "penalties": opts.penalties, "tie_tol": opts.tie_tol}


def measure_statistic(spec: ComparisonSpec) -> dict[str, Any]:
    """The numbers of one measure spec: statistic, and p-value and null with permutations."""
    opts = spec.options
    assert isinstance(opts, MeasureOptions)
    common = dict(n_permutations=opts.permutations, **_common(spec), **_settings(opts))
    numbers: dict[str, Any] = {"device": "cpu"}
    if opts.test == "cka":
        cka = linear_cka(spec.a, spec.b, **common)
        numbers["statistic"], p_value, null = cka.cka, cka.p_value, cka.null
    elif opts.test == "knn":
        knn = mutual_knn(spec.a, spec.b, **common)
        numbers["statistic"], p_value, null = knn.alignment, knn.p_value, knn.null
    else:
        reg = regression_two_vs_two(spec.a, spec.b, **common)
        numbers["statistic"], p_value, null = reg.accuracy, reg.p_value, reg.null
        numbers["n_pairs"] = reg.n_pairs
    numbers["statistic"] = float(numbers["statistic"])
    if opts.permutations > 0:
        numbers["p_value"] = float(p_value) if p_value is not None else None
        numbers["null"] = np.asarray(null, dtype=np.float64)
    return numbers


def measure_null(spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
    """Permutations ``start..stop-1`` of a measure spec's null (blocks concatenate exactly)."""
    opts = spec.options
    assert isinstance(opts, MeasureOptions)
    common = dict(
        n_permutations=opts.permutations,
        start=start,
        stop=stop,
        **_common(spec),
        **_settings(opts),
    )
    function: Any = {"cka": cka_null, "knn": knn_null, "reg2v2": regression_null}[opts.test]
    return np.asarray(function(spec.a, spec.b, **common), dtype=np.float64)


def measure(
    wh: Any,
    space_a: str,
    space_b: str,
    test: str,
    *,
    estimator: str = "unbiased",
    k: int = DEFAULT_K,
    distance: str = "cosine",
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    tie_tol: float = REGRESSION_TIE_TOL,
    permutations: int = 0,
    seed: int | None = None,
    force: bool = False,
) -> Any:
    """Compute one measure between two stored spaces over their shared concepts and store it.

    An identical result already stored (same space contents, concepts, options, number of
    permutations and seed, algorithm version; any seed when ``seed`` is None) is returned as
    it is unless ``force``. The p-value is the uncorrected one: FDR belongs to sweeps.

    Args:
        wh: The warehouse.
        space_a: First space (usually a layer); regression 2 vs 2 predicts B from it.
        space_b: Second space (usually a word space); permutations relabel its concepts.
        test: ``cka``, ``knn`` or ``reg2v2``.
        estimator: CKA estimator: unbiased (default) or biased.
        k: Neighbours per concept of mutual k-NN alignment.
        distance: Regression 2 vs 2 row distance: cosine (default) or pearson.
        penalties: Regression 2 vs 2 ridge penalty grid (multiples of tr(Xc Xc')/n).
        tie_tol: Regression 2 vs 2 tie tolerance.
        permutations: Size of the permutation null (0: no p-value).
        seed: Seed of the permutations; None draws one and records it.
        force: Recompute an identical stored result (adding a row).

    Returns:
        The stored ``results_measures`` row.

    Raises:
        ConfigError: An unknown option value.
        NotFoundError: An unknown space.
        DegenerateInputError: Fewer than four shared concepts or a degenerate vector.
    """
    from semwh.runs.comparison import compare_spec, content_hashes, plan_comparison
    from semwh.vectors import load_space

    options = MeasureOptions.make(
        test,
        estimator=estimator,
        k=k,
        distance=distance,
        penalties=penalties,
        tie_tol=tie_tol,
        permutations=permutations,
        seed=seed,
    )
    hashes = content_hashes(wh, space_a, space_b)
    spec = plan_comparison(load_space(wh, space_a), load_space(wh, space_b), options, hashes)
    return compare_spec(wh, spec, force=force)
