"""One measure between two stored spaces, by its registered name (:mod:`semwh.measures`).

The measures share the comparison machinery of :mod:`semwh.runs.comparison` (a spec of two
spaces over their shared concepts, a pure run, storage with provenance, reuse of identical
results) and differ only in the measure's own functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semwh.analyze.knn import DEFAULT_K
from semwh.analyze.regression import DEFAULT_PENALTIES, REGRESSION_TIE_TOL
from semwh.measures import get
from semwh.runs.comparison import compare_spec, plan_stored
from semwh.runs.levels import CONCEPTS, Items


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
    items: Items = CONCEPTS,
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
        items: The level, permutation scheme and bootstrap unit.

    Returns:
        The stored ``results_measures`` row.

    Raises:
        ConfigError: An unknown option value.
        NotFoundError: An unknown space.
        DegenerateInputError: Fewer than four shared concepts or a degenerate vector.
    """
    own: dict[str, Any] = dict(estimator=estimator, k=k, distance=distance, penalties=penalties)
    own["tie_tol"] = tie_tol
    defaults = get(test).defaults()
    options = get(test).make_options(
        permutations=permutations,
        seed=seed,
        **{key: value for key, value in own.items() if key in defaults},
    )
    return compare_spec(wh, plan_stored(wh, space_a, space_b, options, items), force=force)


def compare_measure(
    wh: Any,
    space_a: str,
    space_b: str,
    measure: str,
    *,
    permutations: int = 0,
    seed: int | None = None,
    bootstrap: int = 0,
    device: str = "cpu",
    force: bool = False,
    options: dict[str, Any] | None = None,
    items: Items = CONCEPTS,
    bootstrap_seed: int | None = None,
    **kwargs: Any,
) -> Any:
    """Compute any registered measure between two stored spaces and store it.

    Args:
        wh: The warehouse.
        space_a: First space (usually a layer).
        space_b: Second space (a word space, or an RDM for a measure of similarities);
            permutations relabel its concepts.
        measure: A registered measure's name (``semwh analyze measures`` lists them).
        permutations: Size of the permutation null (0: no p-value).
        seed: Seed of the permutations and bootstrap; None draws one and records it.
        bootstrap: Concept bootstrap resamples, for measures that have an interval.
        bootstrap_seed: Seed of the bootstrap's resamples (None: from ``seed``); a sweep
            cell's ``bootstrap_seed`` reproduces its interval.
        device: ``cpu``, ``cuda`` or ``auto``.
        force: Recompute an identical stored result (adding a row).
        options: The measure's own options by name (text values are read in the type of
            the option's default); unknown names are refused.
        items: The level, permutation scheme and bootstrap unit
            (:class:`semwh.runs.levels.Items`).
        kwargs: Passed to :func:`semwh.runs.comparison.compare_spec` (``memory``,
            ``on_plan``).

    Returns:
        The stored result row.

    Raises:
        ConfigError: An unknown measure, option or value.
        NotFoundError: An unknown space.
        DegenerateInputError: Fewer than four shared concepts or a degenerate vector.
    """
    # The bootstrap seed goes only where one is given (a plugin measure may not take it).
    parent = {} if bootstrap_seed is None else {"bootstrap_seed": bootstrap_seed}
    opts = get(measure).make_options(
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        device=device,
        **parent,
        **(options or {}),
    )
    return compare_spec(wh, plan_stored(wh, space_a, space_b, opts, items), force=force, **kwargs)
