"""RSA and 2 vs 2 between two stored spaces: plan, run (pure), store with provenance."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from semwh.analyze import MIN_CONCEPTS, TIE_TOL
from semwh.analyze.design import Design, exchangeable, image_design
from semwh.analyze.subjects import MIN_RESAMPLES, as_similarities, normalise_rdms
from semwh.errors import ConfigError, DegenerateInputError, SemwhError
from semwh.measures import SIMILARITIES, get, similarity_measures
from semwh.measures.base import Allocate, Options, check_seed
from semwh.runs import result_rows
from semwh.runs.levels import CONCEPTS, Items
from semwh.runs.options import ComparisonOptions
from semwh.runs.plan import AnalysisPlan, check_analysis_plan, plan_spec
from semwh.runs.provenance import concepts_sha256, draw_seed
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.vectors import SpaceVectors, get_space, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.writers import results_lock, transaction


def shared_concepts(a: SpaceVectors, b: SpaceVectors) -> list[str]:
    """The items (concepts, or stimuli at the image level) both spaces have vectors for,
    sorted; at least four of them.

    Raises:
        DegenerateInputError: Fewer than four shared items.
    """
    shared = sorted(set(a.concept_ids) & set(b.concept_ids))
    if len(shared) < MIN_CONCEPTS:
        listed = ", ".join(shared[:10]) if shared else "none"
        what = "stimuli" if a.level == "image" else "concepts"
        key = "stimulus" if a.level == "image" else "concept"
        raise DegenerateInputError(
            f"spaces {a.name!r} ({len(a.concept_ids)} {what}) and {b.name!r} "
            f"({len(b.concept_ids)} {what}) share {len(shared)} {what} ({listed}); a "
            f"comparison needs at least {MIN_CONCEPTS}: check that both spaces are keyed by "
            f"the same {key} ids"
        )
    return shared


#: Fewest distinct relabellings a permutation scheme must allow (p can reach 0.05).
MIN_RELABELLINGS = 20


def _level_fields(
    a: SpaceVectors, b: SpaceVectors, items: Items, concepts: Sequence[str], permutations: int
) -> dict[str, Any]:
    """The spec's level, item concepts, scheme and bootstrap unit.

    Raises:
        ConfigError: Spaces loaded at different levels, or a scheme that allows fewer than
            20 distinct relabellings of the items when permutations are asked for.
    """
    if a.level != items.level or b.level != items.level:
        raise ConfigError(
            f"spaces {a.name!r} ({a.level} level) and {b.name!r} ({b.level} level) were "
            f"loaded at other levels than the comparison's ({items.level})"
        )
    if not items.image:
        return {}
    assert a.item_concepts is not None
    of = dict(zip(a.concept_ids, a.item_concepts, strict=True))
    item_concepts = tuple(of[s] for s in concepts)
    design, permute, resample = image_design(item_concepts, items.permute, items.resample)
    if permutations > 0 and design.n_distinct() < MIN_RELABELLINGS:
        scheme = f"--permute {permute}" if items.permute else f"the default scheme ({permute})"
        raise ConfigError(
            f"{scheme} over the {len(concepts)} stimuli of {a.name!r} and "
            f"{b.name!r} allows {int(design.n_distinct())} distinct relabelling(s), fewer than "
            f"{MIN_RELABELLINGS}: no p-value could reach 0.05 ({_design_note(design)}); "
            f"{_other_schemes(permute)}, or run without permutations (-n 0)"
        )
    return dict(item_concepts=item_concepts, permute=permute, resample=resample)


def _other_schemes(permute: str) -> str:
    """What to pass instead of a scheme with too few relabellings."""
    if permute == "concepts":
        return (
            "choose --permute images (every image exchangeable) or within-concept (exemplar "
            "information beyond the category)"
        )
    if permute == "within-concept":
        return (
            "choose --permute concepts (whole concepts exchange) or images (every image "
            "exchangeable)"
        )
    return "compare more stimuli"


def _design_note(design: Design) -> str:
    sizes = np.bincount(design.groups) if design.groups is not None else np.ones(design.n, int)
    if design.permute == "concepts":
        return (
            f"concepts exchange only with concepts of as many images; {design.fixed_concepts()} "
            f"of {sizes.size} concepts have a number of images no other concept has"
        )
    return f"{int((sizes > 1).sum())} of {sizes.size} concepts have two or more images"


def content_hashes(wh: Warehouse, *names: str) -> dict[str, str | None]:
    """The registered content hash of each named space."""
    with wh.session() as session:
        return {name: get_space(session, name).content_sha256 for name in names}


def plan_comparison(
    a: SpaceVectors,
    b: SpaceVectors,
    options: Options,
    input_hashes: dict[str, str | None],
    concept_ids: Sequence[str] | None = None,
    items: Items = CONCEPTS,
) -> ComparisonSpec:
    """Turn two loaded spaces into what a measure compares: the one place that does it.

    Every path (single analyses, sweeps, grids, peaks, differences, verify, the Ray backend)
    builds its specs here, so no path can answer another question than the others. Space A
    always gives its vectors over the concepts. Space B gives its vectors, or, for a target
    with subjects (an RDM space from ``semwh ingest rdm``), the stack of its subjects'
    similarity matrices over the concepts (minus each subject's dissimilarities, after the
    options' ``normalise``): every statistic is then computed per subject and averaged.

    Args:
        a: The first space (never an RDM).
        b: The second space; permutations relabel its concepts.
        options: The comparison's options.
        input_hashes: Both spaces' content hashes, by name.
        concept_ids: The concepts to compare over (a grid's concepts common to all its spaces);
            default: the concepts both spaces share. At the image level: stimuli.
        items: The level, permutation scheme and bootstrap unit; both spaces must have been
            loaded at that level (:func:`semwh.vectors.load_space`).

    Raises:
        ConfigError: An RDM as space A, as B of a vector-based measure, or a normalisation
            asked of a target without subjects.
        DegenerateInputError: Fewer than four shared concepts, or a subject whose RDM is
            constant over the concepts.
    """
    concepts = shared_concepts(a, b) if concept_ids is None else list(concept_ids)
    if a.kind == "rdm":
        raise ConfigError(
            f"space {a.name!r} is an RDM: RDMs are targets, pass it as the second space (--b)"
        )
    normalise = getattr(options, "normalise", "none")
    common: dict[str, Any] = dict(
        space_a=a.name,
        space_b=b.name,
        concept_ids=tuple(concepts),
        a=a.subset(concepts),
        options=options,
        input_hashes=input_hashes,
        concepts_sha256=concepts_sha256(concepts),
        **_level_fields(a, b, items, concepts, options.permutations),
    )
    if b.kind != "rdm":
        if normalise != "none":
            raise ConfigError(
                f"--normalise {normalise} rescales the subjects' matrices of an RDM target; "
                f"space {b.name!r} is a {b.kind or 'vector'} space (use --normalise none)"
            )
        return ComparisonSpec(b=b.subset(concepts), **common)
    if get(options.test).inputs != SIMILARITIES:
        raise ConfigError(
            f"space {b.name!r} is an RDM, which has no feature vectors: compare it with "
            f"{' or '.join(similarity_measures())}, not {options.test}"
        )
    stack = rdm_stack(b, concepts)
    subjects = b.subjects or tuple(str(i + 1) for i in range(stack.shape[0]))
    if len(subjects) > 1 and 0 < options.bootstrap < MIN_RESAMPLES:
        raise ConfigError(
            f"--bootstrap {options.bootstrap}: against the {len(subjects)} subjects of "
            f"{b.name!r} the bootstrap also resamples subjects (and both), which needs at "
            f"least {MIN_RESAMPLES} resamples"
        )
    try:
        stack = normalise_rdms(stack, normalise, subjects)
    except DegenerateInputError as exc:
        raise DegenerateInputError(f"RDM space {b.name!r}: {exc}") from exc
    return ComparisonSpec(b=as_similarities(stack), subjects=tuple(subjects), **common)


def rdm_stack(space: SpaceVectors, concept_ids: Sequence[str]) -> np.ndarray:
    """The (subjects, k, k) dissimilarities of an RDM space over ``concept_ids``."""
    n_all = len(space.concept_ids)
    subjects = space.matrix.shape[1] // n_all
    index = {w: i for i, w in enumerate(space.concept_ids)}
    rows = [index[w] for w in concept_ids]
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
    with _computing(spec), _matrices(scratch) as matrices:
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
    with _computing(spec):
        with _plugin_errors(spec):
            return np.asarray(spec.measure.null(spec, start, stop), dtype=np.float64)


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
    return replace(
        record,
        spec=spec,
        p_value=float(spec.measure.p_value(record.statistic, null)),
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
def _computing(spec: ComparisonSpec) -> Iterator[None]:
    """Draw permutations and resamples by the spec's design (:mod:`semwh.analyze.design`),
    and name the test and both spaces in a degenerate-input error."""
    try:
        with exchangeable(spec.design):
            yield
    except DegenerateInputError as exc:
        raise DegenerateInputError(
            f"{spec.options.test} of space {spec.space_a!r} vs space {spec.space_b!r}: {exc}"
        ) from exc


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


def _statistic(spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
    """The numbers of one spec, from its registered measure (:mod:`semwh.measures`).

    Raises:
        DegenerateInputError: A statistic that is not a finite number (nothing is stored
            with a p-value that would read as significant).
        ConfigError: A measure from another package that failed with an error of its own
            (named with its module, not a traceback).
    """
    with _plugin_errors(spec):
        numbers = spec.measure.statistic(spec, allocate)
        statistic = numbers.get("statistic")
        try:
            finite = bool(np.isfinite(float(statistic)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            finite = False
    if not finite:
        raise DegenerateInputError(
            f"the statistic is {statistic!r}, not a finite number: nothing is stored"
        )
    numbers["statistic"] = float(statistic)
    return numbers


@contextmanager
def _plugin_errors(spec: ComparisonSpec) -> Iterator[None]:
    """One line naming a plugin measure that fails with an error that is not semwh's."""
    measure = spec.measure
    module = type(measure).__module__
    try:
        yield
    except SemwhError:
        raise
    except Exception as exc:
        if module.startswith("semwh."):
            raise
        raise ConfigError(
            f"measure {measure.name!r} ({module}) failed: {type(exc).__name__}: {exc}"
        ) from exc


def concept_bootstrap_values(spec: ComparisonSpec, n_bootstrap: int, seed: int) -> np.ndarray:
    """The statistic of ``spec`` (its mean over subjects) on ``n_bootstrap`` concept
    resamples drawn from ``seed``: the same resamples for every spec of the same concepts
    (a peak layer's depth interval resamples every layer alike)."""
    with exchangeable(spec.design):
        return np.asarray(spec.measure.resampled(spec, n_bootstrap, seed), dtype=np.float64)


def find_stored(
    session: Session, spec: ComparisonSpec, *, any_seed: bool
) -> result_rows.ComparisonRow | None:
    """The newest stored row computed from the same inputs with the same options.

    Every input that changes a number is part of the key (:func:`result_rows.matching_rows`): both
    spaces' content hashes, the concept set, similarity, method or distance, tie tolerance,
    permutations, seed, bootstrap size and the algorithm's version.
    """
    rows = result_rows.matching_rows(session, spec, any_seed=any_seed)
    return rows[0] if rows else None


def lookup(wh: Warehouse, spec: ComparisonSpec) -> result_rows.ComparisonRow | None:
    """A stored row for ``spec``; with no seed given, a row of any seed counts as the same."""
    with wh.session() as session:
        return lookup_in(session, spec)


def lookup_in(session: Session, spec: ComparisonSpec) -> result_rows.ComparisonRow | None:
    """:func:`lookup` inside the caller's session (a sweep looks many up at once)."""
    any_seed = spec.options.needs_seed and spec.options.seed is None
    return find_stored(session, spec, any_seed=any_seed)


def save_record(
    wh: Warehouse, record: ResultRecord, *, reuse: bool = True
) -> result_rows.ComparisonRow:
    """Store a record in one transaction (:func:`store_records`)."""
    return store_records(wh, [record], reuse=reuse)[0]


def store_records(
    wh: Warehouse, records: Sequence[ResultRecord], *, reuse: bool = True
) -> list[result_rows.ComparisonRow]:
    """Store records in one transaction, tried again on a serialisation failure or deadlock,
    holding the registry's results lock (:mod:`semwh.warehouse.writers`).

    With ``reuse``, a comparison another process stored meanwhile (same inputs, options and
    seed) is not stored twice: its stored row is returned. Results are never replaced: a
    recomputation (``reuse=False``) adds a row, and older rows stay as history (and as members
    of the sweeps that list them).
    """
    if not records:
        return []

    def store(session: Session) -> list[result_rows.ComparisonRow]:
        results_lock(session, "storing results")
        maybe = _maybe_stored(session, records) if reuse else set()
        stored = [
            lookup_in(session, record.spec) if i in maybe else None
            for i, record in enumerate(records)
        ]
        new = [record for record, row in zip(records, stored, strict=True) if row is None]
        added = iter(result_rows.add_comparisons(session, new))
        return [row if row is not None else next(added) for row in stored]

    return transaction(wh, store, what="storing results")


def _key(record: ResultRecord) -> tuple[str, str, str, int | None]:
    spec = record.spec
    return (spec.options.test, spec.space_a, spec.space_b, spec.options.seed)


def _maybe_stored(session: Session, records: Sequence[ResultRecord]) -> set[int]:
    """The records that may have a stored row (measure, spaces and seed stored), found in
    one query for the batch; only these are looked up in full (:func:`lookup_in`). A record
    that takes a stored row of any seed is always looked up."""
    Result = result_rows.Result
    keys = {_key(record) for record in records}
    seeded = [key for key in keys if key[3] is not None]
    unseeded = [key[:3] for key in keys if key[3] is None]
    clauses: list[ColumnElement[bool]] = []
    if seeded:
        clauses.append(
            tuple_(Result.measure, Result.space_a, Result.space_b, Result.seed).in_(seeded)
        )
    if unseeded:
        clauses.append(
            and_(
                tuple_(Result.measure, Result.space_a, Result.space_b).in_(unseeded),
                Result.seed.is_(None),
            )
        )
    found = set(
        tuple(row)
        for row in session.execute(
            select(Result.measure, Result.space_a, Result.space_b, Result.seed).where(or_(*clauses))
        ).all()
    )
    return {
        i
        for i, record in enumerate(records)
        if _key(record) in found
        or (record.spec.options.needs_seed and record.spec.options.seed is None)
    }


def save_in(session: Session, record: ResultRecord) -> result_rows.ComparisonRow:
    """Add a record's rows inside the caller's transaction."""
    return result_rows.add_comparison(session, record)


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
    normalise: str = "none",
    items: Items = CONCEPTS,
    bootstrap_seed: int | None = None,
) -> result_rows.ComparisonRow:
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
        normalise: For an RDM space B (a target with subjects): how each subject's matrix
            is rescaled before it is compared, ``none``, ``zscore`` or ``rank`` of its
            off-diagonal entries. The statistic is the mean over subjects of the comparison
            with each subject's matrix (rsatoolbox's ``eval_fixed``); each subject's value,
            the noise ceiling with the same comparator, tests over subjects (t, Wilcoxon,
            sign flip) and, with ``bootstrap``, intervals over concepts, subjects and both
            are stored with it (``subject_results``, ``subject_inference``).
        items: The level (``Items(level="image")``: the stimuli both spaces have), with its
            permutation scheme and bootstrap unit (:class:`semwh.runs.levels.Items`).
        bootstrap_seed: Seed of the bootstrap's resamples (None: derived from ``seed``); a
            sweep cell's ``bootstrap_seed`` reproduces its interval.

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
        normalise=normalise,
    )
    parent = check_seed(bootstrap_seed)
    if parent is not None and options.bootstrap:
        options = replace(options, bootstrap_seed=parent)
    return compare_spec(
        wh, plan_stored(wh, space_a, space_b, options, items), force=force, memory=memory,
        on_plan=on_plan,
    )  # fmt: skip


def plan_stored(
    wh: Warehouse, space_a: str, space_b: str, options: Options, items: Items = CONCEPTS
) -> ComparisonSpec:
    """The spec of two stored spaces, loaded at the level of ``items``."""
    hashes = content_hashes(wh, space_a, space_b)
    a, b = (load_space(wh, name, items.level) for name in (space_a, space_b))
    return plan_comparison(a, b, options, hashes, items=items)


def compare_spec(
    wh: Warehouse,
    spec: ComparisonSpec,
    *,
    force: bool = False,
    fallback_seed: int | None = None,
    memory: int | None = None,
    on_plan: Callable[[AnalysisPlan], None] | None = None,
) -> result_rows.ComparisonRow:
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
    return save_record(wh, run_comparison(spec, scratch), reuse=not force)


def permutation_null(wh: Warehouse, test: str, result_id: int) -> list[float] | None:
    """The stored permutation null of a result, in the order the permutations were drawn."""
    with wh.session() as session:
        return result_rows.null_values(session, test, result_id)
