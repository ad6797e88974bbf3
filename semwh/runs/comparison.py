"""RSA and 2 vs 2 between two stored spaces: plan, run (pure), store with provenance."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from semwh.analyze import (
    MIN_CONCEPTS,
    TIE_TOL,
    RSAResult,
    TwoVsTwoResult,
    bootstrap_rsa,
    bootstrap_two_vs_two,
    rsa,
    similarity_matrix,
    two_vs_two,
)
from semwh.analyze.ceiling import group_similarity
from semwh.analyze.permutation import permutation_p_value
from semwh.analyze.rsa import rsa_null, rsa_p_value
from semwh.analyze.two_vs_two import two_vs_two_null, two_vs_two_p_value
from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs import store
from semwh.runs.measures import measure_null, measure_statistic
from semwh.runs.options import ComparisonOptions, MeasureOptions
from semwh.runs.plan import AnalysisPlan, check_analysis_plan, plan_spec
from semwh.runs.provenance import concepts_sha256, derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.vectors import SpaceVectors, get_space, load_space
from semwh.warehouse.layout import Warehouse


def shared_concepts(a: SpaceVectors, b: SpaceVectors) -> list[str]:
    """The concepts K both spaces have vectors for, sorted; at least four of them.

    Raises:
        DegenerateInputError: Fewer than four shared concepts.
    """
    shared = sorted(set(a.wnids) & set(b.wnids))
    if len(shared) < MIN_CONCEPTS:
        listed = ", ".join(shared) if shared else "none"
        raise DegenerateInputError(
            f"spaces {a.name!r} ({len(a.wnids)} concepts) and {b.name!r} ({len(b.wnids)} "
            f"concepts) share {len(shared)} concepts ({listed}); a comparison needs at least "
            f"{MIN_CONCEPTS}: check that both spaces use WordNet ids of the same concepts"
        )
    return shared


def content_hashes(wh: Warehouse, *names: str) -> dict[str, str | None]:
    """The registered content hash of each named space."""
    with wh.session() as session:
        return {name: get_space(session, name).content_sha256 for name in names}


def plan_comparison(
    a: SpaceVectors,
    b: SpaceVectors,
    options: ComparisonOptions | MeasureOptions,
    input_hashes: dict[str, str | None],
) -> ComparisonSpec:
    """Restrict two loaded spaces to their shared concepts and bundle them with the options.

    An RDM space (``semwh ingest rdm``) is a target only: as B it enters RSA and 2 vs 2 as
    minus its subjects' mean dissimilarity over the shared concepts.

    Raises:
        ConfigError: An RDM as space A, or as B of a vector-based measure.
    """
    wnids = shared_concepts(a, b)
    if a.kind == "rdm":
        raise ConfigError(
            f"space {a.name!r} is an RDM: RDMs are targets, pass it as the second space (--b)"
        )
    b_matrix = b.subset(wnids)
    if b.kind == "rdm":
        if isinstance(options, MeasureOptions):
            raise ConfigError(
                f"space {b.name!r} is an RDM, which has no feature vectors: compare it with "
                f"rsa or 2v2, not {options.test}"
            )
        b_matrix = group_similarity(rdm_stack(b, wnids))
    return ComparisonSpec(
        space_a=a.name,
        space_b=b.name,
        wnids=tuple(wnids),
        a=a.subset(wnids),
        b=b_matrix,
        options=options,
        input_hashes=input_hashes,
        concepts_sha256=concepts_sha256(wnids),
        b_is_similarity=b.kind == "rdm",
    )


def rdm_stack(space: SpaceVectors, wnids: list[str]) -> np.ndarray:
    """The (subjects, k, k) dissimilarities of an RDM space over ``wnids``."""
    n_all = len(space.wnids)
    subjects = space.matrix.shape[1] // n_all
    index = {w: i for i, w in enumerate(space.wnids)}
    rows = [index[w] for w in wnids]
    stack = space.matrix[rows].reshape(len(rows), subjects, n_all)[:, :, rows]
    return np.transpose(stack, (1, 0, 2))


def with_seed(spec: ComparisonSpec, seed: int | None) -> ComparisonSpec:
    """The same comparison with ``seed`` (kept None when nothing random runs)."""
    options = spec.options
    resolved = seed if options.needs_seed else None
    if resolved == options.seed:
        return spec
    return replace(spec, options=replace(options, seed=resolved))


def run_comparison(spec: ComparisonSpec, scratch: Path | None = None) -> ResultRecord:
    """Compute one comparison from its spec alone (no warehouse access).

    Args:
        spec: The comparison.
        scratch: A folder for the two similarity matrices as files (numpy memmaps, removed
            afterwards) when they should not be held in memory (see :func:`plan_for`);
            None keeps them in memory. The numbers are the same either way.

    Raises:
        DegenerateInputError: A constant or non-finite concept vector; the message names the
            concepts and both spaces.
    """
    _check_seed(spec)
    start = time.perf_counter()
    with _naming(spec), _matrices(scratch) as matrices:
        numbers = _statistic(spec, matrices)
    return ResultRecord(spec=spec, seconds=time.perf_counter() - start, **numbers)


def plan_for(spec: ComparisonSpec, tmp: Path, memory: int | None = None) -> AnalysisPlan:
    """The memory plan of a spec on this machine (:func:`semwh.runs.plan.plan_spec`)."""
    return plan_spec(spec, tmp, memory)


def without_null(spec: ComparisonSpec) -> ComparisonSpec:
    """The spec with its permutations left out: :func:`run_comparison` of it gives the
    statistic (and bootstrap interval) only, for a mapper that computes the null in blocks
    (:func:`comparison_null`) and completes the record with :func:`with_null`."""
    return replace(spec, options=replace(spec.options, permutations=0))


def comparison_null(spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
    """Null statistics of permutations ``start..stop-1`` of a spec's permutation test (pure).

    The blocks covering ``0..permutations``, concatenated in order, are the null
    :func:`run_comparison` stores, bit for bit: same seed, same permutation stream, same code.

    Raises:
        ConfigError: A spec without a seed, or a block outside ``0..permutations``.
        DegenerateInputError: As :func:`run_comparison`.
    """
    _check_seed(spec)
    opts = spec.options
    if isinstance(opts, MeasureOptions):
        with _naming(spec):
            return measure_null(spec, start, stop)
    with _naming(spec):
        sim_a, sim_b, common = _inputs(spec)
        if opts.test == "rsa":
            null = rsa_null(
                sim_a,
                sim_b,
                method=opts.metric,
                start=start,
                stop=stop,
                backend=_backend(opts),
                device=opts.device,
                **common,
            )
        else:
            null = two_vs_two_null(
                sim_a,
                sim_b,
                distance=opts.metric,
                tie_tol=_tie_tol(opts),
                start=start,
                stop=stop,
                backend=_backend(opts),
                device=opts.device,
                **common,
            )
    return np.asarray(null, dtype=np.float64)


def with_null(
    record: ResultRecord, spec: ComparisonSpec, null: np.ndarray, seconds: float = 0.0
) -> ResultRecord:
    """Complete a record of :func:`without_null` with the whole null of ``spec``.

    Args:
        record: The record of ``without_null(spec)``.
        spec: The comparison with its permutations.
        null: Its null: the blocks of :func:`comparison_null`, concatenated in order.
        seconds: Time spent on the null, added to the record's.

    Raises:
        ConfigError: A null whose size is not the spec's number of permutations.
    """
    n_permutations = spec.options.permutations
    null = np.asarray(null, dtype=np.float64)
    if null.shape != (n_permutations,):
        raise ConfigError(
            f"{spec.options.test} of {spec.space_a!r} vs {spec.space_b!r}: a null of "
            f"{null.size} values for {n_permutations} permutations; pass every block of "
            "0..permutations, in order"
        )
    if n_permutations == 0:
        return replace(record, spec=spec)
    p_value = {"rsa": rsa_p_value, "2v2": two_vs_two_p_value}.get(
        spec.options.test, permutation_p_value
    )
    return replace(
        record,
        spec=spec,
        p_value=float(p_value(record.statistic, null)),
        null=null,
        seconds=record.seconds + seconds,
    )


def _check_seed(spec: ComparisonSpec) -> None:
    opts = spec.options
    if opts.needs_seed and opts.seed is None:
        raise ConfigError(
            f"{opts.test} of {spec.space_a!r} vs {spec.space_b!r} needs a seed for its "
            "permutations or bootstrap: resolve it with with_seed() before run_comparison()"
        )


@contextmanager
def _naming(spec: ComparisonSpec) -> Iterator[None]:
    """Name the test and both spaces in a degenerate-input error."""
    try:
        yield
    except DegenerateInputError as exc:
        raise DegenerateInputError(
            f"{spec.options.test} of space {spec.space_a!r} vs space {spec.space_b!r}: {exc}"
        ) from exc


#: Makes the n x n output array of one similarity matrix (in memory, or a file in tmp/).
Allocate = Callable[[int], np.ndarray]


@contextmanager
def _matrices(scratch: Path | None) -> Iterator[Allocate | None]:
    """None (arrays in memory), or an allocator of memmaps in ``scratch`` removed on exit."""
    if scratch is None:
        yield None
        return
    scratch.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def allocate(n: int) -> np.ndarray:
        handle, name = tempfile.mkstemp(prefix="similarity-", suffix=".f64", dir=scratch)
        os.close(handle)
        paths.append(Path(name))
        return np.memmap(name, dtype=np.float64, mode="w+", shape=(n, n))

    try:
        yield allocate
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def _inputs(
    spec: ComparisonSpec, allocate: Allocate | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The two similarity matrices and the arguments every statistic of the spec takes."""
    opts = spec.options
    assert isinstance(opts, ComparisonOptions)
    labels = list(spec.wnids)
    n = len(labels)
    sim_a = similarity_matrix(
        spec.a,
        metric=opts.similarity,
        labels=labels,
        space=spec.space_a,
        out=None if allocate is None else allocate(n),
    )
    if spec.b_is_similarity:
        sim_b = spec.b
    else:
        sim_b = similarity_matrix(
            spec.b,
            metric=opts.similarity,
            labels=labels,
            space=spec.space_b,
            out=None if allocate is None else allocate(n),
        )
    common: dict[str, Any] = dict(
        n_permutations=opts.permutations,
        seed=opts.seed if opts.seed is not None else 0,
        labels=labels,
        space_a=spec.space_a,
        space_b=spec.space_b,
    )
    return sim_a, sim_b, common


def _backend(opts: ComparisonOptions) -> str:
    """The backend of the kernels: torch (float64 on the device) off the CPU, else numpy."""
    return "torch" if opts.device != "cpu" else "numpy"


def _tie_tol(opts: ComparisonOptions) -> float:
    return TIE_TOL if opts.tie_tol is None else opts.tie_tol


def _statistic(spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
    """Call the pure statistics of :mod:`semwh.analyze` for one spec."""
    opts = spec.options
    if isinstance(opts, MeasureOptions):
        return measure_statistic(spec)
    sim_a, sim_b, common = _inputs(spec, allocate)
    labels = common["labels"]
    numbers: dict[str, Any]
    result: RSAResult | TwoVsTwoResult
    if opts.test == "rsa":
        result = rsa(
            sim_a,
            sim_b,
            method=opts.metric,
            backend=_backend(opts),
            device=opts.device,
            **common,
        )
        # The statistic itself is computed on the CPU; the device runs the Mantel null.
        numbers = {"statistic": float(result.rho), "device": opts.device}
    else:
        pairs = two_vs_two(
            sim_a,
            sim_b,
            distance=opts.metric,
            tie_tol=_tie_tol(opts),
            backend=_backend(opts),
            device=opts.device,
            **common,
        )
        result = pairs
        numbers = {
            "statistic": float(pairs.accuracy),
            "n_pairs": int(pairs.n_pairs),
            "device": opts.device,
        }
    if opts.permutations > 0:
        assert result.p_value is not None
        numbers["p_value"] = float(result.p_value)
        numbers["null"] = np.asarray(result.null, dtype=np.float64)
    if opts.bootstrap > 0:
        # Its own stream, derived from the recorded seed, so that adding a bootstrap never
        # changes the permutations.
        boot: dict[str, Any] = dict(
            n_bootstrap=opts.bootstrap,
            seed=derive_seed(common["seed"], "bootstrap"),
            labels=labels,
            space_a=spec.space_a,
            space_b=spec.space_b,
        )
        if opts.test == "rsa":
            ci = bootstrap_rsa(sim_a, sim_b, method=opts.metric, **boot)
        else:
            ci = bootstrap_two_vs_two(
                sim_a, sim_b, distance=opts.metric, tie_tol=_tie_tol(opts), **boot
            )
        numbers["ci_low"], numbers["ci_high"] = _finite(ci.low), _finite(ci.high)
    return numbers


def _finite(value: float) -> float | None:
    """None for a NaN bound (every resample degenerate) rather than a NaN in the table."""
    return float(value) if np.isfinite(value) else None


def find_stored(
    session: Session, spec: ComparisonSpec, *, any_seed: bool
) -> store.ComparisonRow | None:
    """The newest stored row computed from the same inputs with the same options.

    Every input that changes a number is part of the key (:func:`store.matching_rows`): both
    spaces' content hashes, the concept set, similarity, method or distance, tie tolerance,
    permutations, seed, bootstrap size and the algorithm's version.
    """
    rows = store.matching_rows(session, spec, any_seed=any_seed)
    return rows[0] if rows else None


def lookup(wh: Warehouse, spec: ComparisonSpec) -> store.ComparisonRow | None:
    """A stored row for ``spec``; with no seed given, a row of any seed counts as the same."""
    with wh.session() as session:
        return lookup_in(session, spec)


def lookup_in(session: Session, spec: ComparisonSpec) -> store.ComparisonRow | None:
    """:func:`lookup` inside the caller's session (a sweep looks many up at once)."""
    any_seed = spec.options.needs_seed and spec.options.seed is None
    return find_stored(session, spec, any_seed=any_seed)


def save_record(wh: Warehouse, record: ResultRecord) -> store.ComparisonRow:
    """Store a record in one transaction.

    Results are never replaced: a recomputation adds a row, and older rows stay as history
    (and as members of the sweeps that list them).
    """
    with wh.session() as session:
        return save_in(session, record)


def save_in(session: Session, record: ResultRecord) -> store.ComparisonRow:
    """:func:`save_record` inside the caller's transaction."""
    return store.add_comparison(session, record)


def compare(
    wh: Warehouse,
    space_a: str,
    space_b: str,
    test: str = "rsa",
    *,
    similarity: str = "pearson",
    method: str = "spearman",
    distance: str = "pearson",
    permutations: int = 0,
    seed: int | None = None,
    bootstrap: int = 0,
    device: str = "cpu",
    tie_tol: float = TIE_TOL,
    force: bool = False,
    memory: int | None = None,
    on_plan: Callable[[AnalysisPlan], None] | None = None,
) -> store.ComparisonRow:
    """Compare two stored spaces over their shared concepts and store the result.

    An identical analysis already stored (same space contents, concepts, options, number of
    permutations and seed, algorithm version; any seed when ``seed`` is None) is returned as
    it is, unless ``force`` is true, which recomputes it and stores a new row (the old one
    stays, unchanged, as history and in every sweep that lists it). The p-value is the
    uncorrected one: FDR belongs to sweeps.

    Args:
        wh: The warehouse.
        space_a: First space (usually a layer ``MODEL/LAYER``).
        space_b: Second space (usually a word space); permutations relabel its concepts.
        test: ``rsa`` or ``2v2``.
        similarity: Concept similarity: pearson, spearman or cosine.
        method: RSA correlation of the upper triangles: spearman, pearson or kendall.
        distance: 2 vs 2 row distance: pearson or cosine.
        permutations: Size of the permutation null (0: no p-value).
        seed: Seed of the permutations and bootstrap; None draws one and records it.
        bootstrap: Bootstrap resamples of the concepts for a 95% interval (0: none).
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available) for the matrix work.
        tie_tol: 2 vs 2 tie tolerance (see :mod:`semwh.analyze.two_vs_two`).
        force: Recompute an identical stored result (adding a row).
        memory: Bytes the analysis may use (default: the available RAM); the similarity
            matrices are streamed from the warehouse's tmp/ when they do not fit besides
            the working memory.
        on_plan: Called with the memory plan before a computation runs (not for a result
            found stored).

    Returns:
        The stored ``results_rsa`` or ``results_2v2`` row.

    Raises:
        ConfigError: An unknown option value.
        NotFoundError: An unknown space.
        DegenerateInputError: Fewer than four shared concepts, or a constant or non-finite
            concept vector (the message names the concepts and both spaces).
        ResourceError: The comparison cannot fit in memory (the message has the numbers).
    """
    options = ComparisonOptions.make(
        test,
        similarity=similarity,
        method=method,
        distance=distance,
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        device=device,
        tie_tol=tie_tol,
    )
    hashes = content_hashes(wh, space_a, space_b)
    spec = plan_comparison(load_space(wh, space_a), load_space(wh, space_b), options, hashes)
    return compare_spec(wh, spec, force=force, memory=memory, on_plan=on_plan)


def compare_spec(
    wh: Warehouse,
    spec: ComparisonSpec,
    *,
    force: bool = False,
    fallback_seed: int | None = None,
    memory: int | None = None,
    on_plan: Callable[[AnalysisPlan], None] | None = None,
) -> store.ComparisonRow:
    """Return the stored row for ``spec`` or plan, run and store it.

    ``fallback_seed`` is used when the spec has no seed and one is needed (a sweep passes a
    seed derived from its own); otherwise a fresh seed is drawn. ``memory`` and ``on_plan``
    as for :func:`compare`.

    Raises:
        ResourceError: The comparison cannot fit in memory.
    """
    found = lookup(wh, spec)
    if found is not None and not force:
        return found
    if spec.options.needs_seed and spec.options.seed is None:
        spec = with_seed(spec, fallback_seed if fallback_seed is not None else draw_seed())
    plan = plan_for(spec, wh.tmp_root, memory)
    if on_plan is not None:
        on_plan(plan)
    check_analysis_plan(plan)
    scratch = wh.tmp_root if plan.stream_inputs else None
    return save_record(wh, run_comparison(spec, scratch))


def permutation_null(wh: Warehouse, test: str, result_id: int) -> list[float] | None:
    """The stored permutation null of a result, in the order the permutations were drawn."""
    with wh.session() as session:
        return store.null_values(session, test, result_id)
