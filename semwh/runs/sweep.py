"""A sweep: every layer of some models against some word spaces, with one FDR family."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from semwh.analyze import TIE_TOL
from semwh.analyze.knn import DEFAULT_K
from semwh.analyze.regression import DEFAULT_PENALTIES
from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.progress import Progress, check_progress, report
from semwh.runs import families, store
from semwh.runs.comparison import (
    lookup_in,
    plan_comparison,
    run_comparison,
    save_in,
    with_seed,
)
from semwh.runs.options import (
    MEASURES,
    SWEEP_TESTS,
    ComparisonOptions,
    MeasureOptions,
    check_choice,
    check_seed,
)
from semwh.runs.plan import check_specs
from semwh.runs.provenance import derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.runs.recovery import recovery as run_recovery
from semwh.testing.faults import fault_point
from semwh.vectors import SpaceVectors, layer_spaces, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    Result2v2,
    ResultDiff,
    ResultMeasure,
    ResultRecovery,
    ResultRSA,
    Space,
    VisionModel,
)

RANDOM_SUFFIX = "-random"

#: Computed comparisons are committed at least this often (count, seconds).
COMMIT_EVERY = 64
COMMIT_SECONDS = 30.0

#: A mapper maps the pure per-comparison function over specs, yielding the outcomes in the
#: order of the specs (builtin ``map`` runs them here; :mod:`semwh.ray` has the Ray one).
Mapper = Callable[
    [Callable[[ComparisonSpec], ResultRecord], Iterable[ComparisonSpec]], Iterable[ResultRecord]
]


@dataclass
class SweepResult:
    """What a sweep stored.

    Attributes:
        sweep_id: The stored family (table ``sweeps``).
        analysis_id: The ``analysis_runs`` row of kind ``sweep``.
        seed: The sweep seed every comparison's seed was derived from (None: nothing random).
        rows: One stored RSA / 2 vs 2 row per comparison.
        recovery: Stored recovery rows, when recovery was asked for.
        p_fdr: The sweep's Benjamini-Hochberg p-value of each member, by (test, result_id).
        computed: How many comparisons were computed (the rest were found stored).
        skipped: Comparisons left out as degenerate (empty when ``strict``).
        reused: True when an identical family was already stored and is returned as it is.
        diffs: With ``control_diffs``, each trained layer's result minus its random
            control's (``results_diff``), members of the family as ``diff``.
    """

    sweep_id: int
    analysis_id: int | None
    seed: int | None
    rows: list[store.ComparisonRow] = field(default_factory=list)
    recovery: list[ResultRecovery] = field(default_factory=list)
    p_fdr: families.FDR = field(default_factory=dict)
    computed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    reused: bool = False
    diffs: list[ResultDiff] = field(default_factory=list)


def sweep_models(wh: Warehouse, models: Sequence[str], include_random: bool) -> list[str]:
    """The chosen vision models, each followed by its ``-random`` control when stored."""
    with wh.session() as session:
        known = set(session.scalars(select(VisionModel.name)).all())
    missing = [m for m in models if m not in known]
    if missing:
        hint = ", ".join(sorted(known)) if known else "none; run `semwh extract` first"
        raise NotFoundError(f"unknown vision model(s) {', '.join(missing)} (stored: {hint})")
    chosen: list[str] = []
    for model in models:
        for name in (model, f"{model}{RANDOM_SUFFIX}"):
            if name not in chosen and (name == model or (include_random and name in known)):
                chosen.append(name)
    return chosen


@dataclass(frozen=True)
class Skipped:
    """A comparison a sweep left out because its input is degenerate."""

    test: str
    space_a: str
    space_b: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {
            "test": self.test,
            "space_a": self.space_a,
            "space_b": self.space_b,
            "reason": self.reason,
        }


def run_or_skip(spec: ComparisonSpec) -> ResultRecord | Skipped:
    """:func:`run_comparison`, with a degenerate input returned as :class:`Skipped`."""
    try:
        return run_comparison(spec)
    except DegenerateInputError as exc:
        return Skipped(spec.options.test, spec.space_a, spec.space_b, str(exc))


def _specs(
    wh: Warehouse,
    layers: Sequence[Space],
    words: dict[str, SpaceVectors],
    hashes: dict[str, str | None],
    options: Sequence[ComparisonOptions | MeasureOptions],
    strict: bool,
) -> Iterator[ComparisonSpec | Skipped]:
    """Specs in sweep order, loading each layer space once."""
    for layer in layers:
        a = load_space(wh, layer.name)
        for word_name, b in words.items():
            for opts in options:
                input_hashes = {layer.name: hashes[layer.name], word_name: hashes[word_name]}
                try:
                    yield plan_comparison(a, b, opts, input_hashes)
                except DegenerateInputError as exc:
                    if strict:
                        raise
                    yield Skipped(opts.test, layer.name, word_name, str(exc))


def sweep(
    wh: Warehouse,
    models: Sequence[str],
    word_spaces: Sequence[str],
    *,
    tests: Sequence[str] = ("2v2", "rsa"),
    permutations: int = 1000,
    seed: int | None = None,
    similarity: str = "pearson",
    method: str = "spearman",
    distance: str = "pearson",
    tie_tol: float = TIE_TOL,
    device: str = "cpu",
    include_random: bool = True,
    recovery: bool = False,
    force: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    mapper: Mapper = map,
    estimator: str = "unbiased",
    k: int = DEFAULT_K,
    regression_distance: str = "cosine",
    penalties: Sequence[float] = DEFAULT_PENALTIES,
    control_diffs: bool = False,
    normalise: str = "none",
) -> SweepResult:
    """Compare every layer space of ``models`` with every word space and store the results.

    Each comparison's seed is derived from the sweep seed and the comparison's identity
    (:func:`semwh.runs.provenance.derive_seed`), so the numbers do not depend on the order or
    the backend that ran them. Comparisons already stored are reused (with no ``seed`` given,
    a stored row of any seed counts) unless ``force``, which computes them again as new rows.

    The sweep is a stored family (``sweeps``, ``sweep_members``, view ``sweep_results``):
    Benjamini-Hochberg FDR over every p-value of its tests, recovery included, is stored with
    it and never changes afterwards, whatever runs later. A rerun that finds every member
    stored and exactly the family of the newest identical sweep returns that sweep.

    Args:
        wh: The warehouse.
        models: Vision model names; their ``-random`` controls join when ``include_random``.
        word_spaces: Word (or external) space names.
        tests: Any of ``2v2``, ``rsa``, ``cka`` (linear CKA), ``knn`` (mutual k-NN
            alignment) and ``reg2v2`` (regression 2 vs 2 from the layer to the word space).
        permutations: Size of each permutation null.
        seed: Sweep seed; None draws one and records it.
        similarity: Concept similarity for both tests.
        method: RSA correlation of the upper triangles.
        distance: 2 vs 2 row distance.
        tie_tol: 2 vs 2 tie tolerance.
        device: ``cpu`` or ``cuda``.
        include_random: Also sweep ``MODEL-random`` models when they are stored.
        recovery: Also run 1 vs 2 recovery for each chosen model and word space.
        force: Recompute stored comparisons (new rows; the old ones stay as history).
        strict: Raise on a degenerate comparison instead of skipping it. A sweep skips them
            by default because one degenerate layer (the near-constant logits of a
            random-weight control, say) should not discard the rest; each skipped comparison
            and its reason are returned and recorded in the sweep's parameters.
        progress: Told the comparisons done (``sweep``), stored ones found included.
        mapper: Maps :func:`run_comparison` over specs (``map`` runs them here, in order;
            :func:`semwh.ray.sweep_mapper` gives the Ray one).
        estimator: CKA estimator (``unbiased`` or ``biased``).
        k: Neighbours per concept of mutual k-NN alignment.
        regression_distance: Row distance of regression 2 vs 2 (``cosine`` or ``pearson``).
        penalties: Ridge penalty grid of regression 2 vs 2 (multiples of tr(Xc Xc')/n).
        control_diffs: Also test, for every test but ``knn``, each layer of a model against
            the same layer of its ``-random`` control (:func:`semwh.runs.difference.diff`,
            ``permutations`` bootstrap resamples and sign flips); the differences join the
            sweep's family and its FDR.
        normalise: How the subjects' matrices of an RDM target are rescaled (none, zscore,
            rank); RSA and 2 vs 2 against an RDM are the mean over its subjects.

    Raises:
        ConfigError: Unknown option values or no tests.
        NotFoundError: Unknown models or spaces, or a model without layer spaces.
        DegenerateInputError: With ``strict``, a degenerate comparison (the message names
            the concepts and spaces).
    """
    check_progress(progress)
    seed = check_seed(seed)
    if not tests:
        raise ConfigError(f"a sweep needs at least one test (choose {', '.join(SWEEP_TESTS)})")
    if control_diffs and not include_random:
        raise ConfigError(
            "--diff-random compares each layer with its random control, which --no-random "
            "leaves out: pass one or the other"
        )
    options: list[ComparisonOptions | MeasureOptions] = []
    for test in dict.fromkeys(tests):
        if check_choice(test, SWEEP_TESTS, "test") in MEASURES:
            options.append(
                MeasureOptions.make(
                    test,
                    estimator=estimator,
                    k=k,
                    distance=regression_distance,
                    penalties=penalties,
                    permutations=permutations,
                    seed=None,
                    device=device,
                )
            )
        else:
            options.append(
                ComparisonOptions.make(
                    test,
                    similarity=similarity,
                    method=method,
                    distance=distance,
                    permutations=permutations,
                    seed=None,
                    device=device,
                    tie_tol=tie_tol,
                    normalise=normalise,
                )
            )
    needs_seed = any(o.needs_seed for o in options)
    sweep_seed = seed if seed is not None else (draw_seed() if needs_seed else None)
    chosen = sweep_models(wh, models, include_random)
    layers: list[Space] = []
    for model in chosen:
        with wh.session() as session:
            model_layers = layer_spaces(session, model)
        if not model_layers:
            raise NotFoundError(
                f"vision model {model!r} has no layer spaces: run `semwh extract` for it first"
            )
        layers.extend(model_layers)
    words = {name: load_space(wh, name) for name in dict.fromkeys(word_spaces)}
    if not words:
        raise ConfigError("a sweep needs at least one word space (--words)")
    _check_tests_and_spaces(options, layers, words)
    hashes = {row.name: row.content_sha256 for row in layers}
    with wh.session() as session:
        for name in words:
            hashes[name] = session.scalar(select(Space.content_sha256).where(Space.name == name))

    params: dict[str, Any] = {
        "models": list(models),
        "swept_models": chosen,
        "word_spaces": list(words),
        "tests": [o.test for o in options],
        "similarity": similarity,
        "method": method,
        "distance": distance,
        "tie_tol": float(tie_tol),
        "permutations": permutations,
        "seed": sweep_seed,
        "include_random": include_random,
        "recovery": recovery,
    }
    # The measures' options join the sweep's identity only when it runs them, so that the
    # identity of a sweep of RSA and 2 vs 2 stays what it was.
    for opts in options:
        if isinstance(opts, MeasureOptions):
            params[opts.test] = {
                key: value for key, value in opts.settings().items() if key != "measure"
            }
    if control_diffs:
        params["control_diffs"] = True
    if normalise != "none":
        params["normalise"] = normalise
    with wh.session() as session:
        family = families.open_sweep(
            session,
            models=chosen,
            word_spaces=list(words),
            tests=[o.test for o in options] + (["recovery"] if recovery else []),
            n_permutations=permutations,
            seed=sweep_seed,
            params=params,
        )
        sweep_id = family.sweep_id
        identity_sha256 = json.loads(family.params)["identity_sha256"]
    try:
        return _run_sweep(
            wh,
            sweep_id=sweep_id,
            identity_sha256=identity_sha256,
            params=params,
            models=models,
            layers=layers,
            words=words,
            hashes=hashes,
            options=options,
            seed=seed,
            sweep_seed=sweep_seed,
            device=device,
            recovery=recovery,
            force=force,
            strict=strict,
            progress=progress,
            mapper=mapper,
            control_diffs=control_diffs,
        )
    except BaseException:
        # The sweep's family was never written: mark it, so that nobody reads it as current.
        with wh.session() as session:
            families.fail_sweep(session, sweep_id)
        raise


def _run_sweep(
    wh: Warehouse,
    *,
    sweep_id: int,
    identity_sha256: str,
    params: dict[str, Any],
    models: Sequence[str],
    layers: Sequence[Space],
    words: dict[str, SpaceVectors],
    hashes: dict[str, str | None],
    options: Sequence[ComparisonOptions | MeasureOptions],
    seed: int | None,
    sweep_seed: int | None,
    device: str,
    recovery: bool,
    force: bool,
    strict: bool,
    progress: Progress | None,
    mapper: Mapper,
    control_diffs: bool = False,
) -> SweepResult:
    """Compute or find every member of an opened sweep, then close it with its FDR."""
    start = time.perf_counter()
    total = len(layers) * len(words) * len(options)

    def seeded(spec: ComparisonSpec) -> ComparisonSpec:
        if sweep_seed is None or not spec.options.needs_seed:
            return spec
        return with_seed(
            spec, derive_seed(sweep_seed, spec.options.test, spec.space_a, spec.space_b)
        )

    slots: list[store.ComparisonRow | Skipped | None] = []
    pending: list[tuple[int, ComparisonSpec]] = []
    done = 0
    report(progress, "sweep", done, total)
    # One session for every lookup: opening a registry connection costs more than a query.
    with wh.session() as session:
        for spec in _specs(wh, layers, words, hashes, options, strict):
            if isinstance(spec, Skipped):
                slots.append(spec)
            else:
                # With an explicit sweep seed only rows of the derived seed are the same
                # analysis; without one, a stored row of any seed is.
                found = lookup_in(session, seeded(spec) if seed is not None else spec)
                if found is None or force:
                    pending.append((len(slots), seeded(spec)))
                    slots.append(None)
                    continue
                slots.append(found)
            done += 1
            report(progress, "sweep", done, total)
    # Refused before any comparison runs: the largest one, and the nulls waiting to be stored.
    check_specs(
        [spec for _, spec in pending],
        wh.tmp_root,
        family="sweep",
        held_members=min(len(pending), COMMIT_EVERY) - 1,
    )
    step = run_comparison if strict else run_or_skip
    outcomes = mapper(step, [spec for _, spec in pending])  # type: ignore[arg-type]
    buffer: list[tuple[int, ResultRecord]] = []
    last_commit = time.perf_counter()
    for (index, _spec), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, Skipped):
            slots[index] = outcome
        else:
            buffer.append((index, outcome))
        # Results are committed in small batches: an interrupted sweep keeps what it
        # computed, and a rerun finds those comparisons stored.
        if len(buffer) >= COMMIT_EVERY or time.perf_counter() - last_commit > COMMIT_SECONDS:
            _commit(wh, buffer, slots)
            last_commit = time.perf_counter()
        done += 1
        report(progress, "sweep", done, total)
    _commit(wh, buffer, slots)
    rows = [slot for slot in slots if isinstance(slot, ResultRSA | Result2v2 | ResultMeasure)]
    skipped = [slot for slot in slots if isinstance(slot, Skipped)]
    computed = sum(1 for index, _ in pending if not isinstance(slots[index], Skipped))

    recovered: list[ResultRecovery] = []
    if recovery:
        for model in models:
            for word in words:
                recovered.extend(run_recovery(wh, model, word, force=force))
    diffs = _control_diffs(wh, rows, sweep_seed, force) if control_diffs else []
    members = [families.member(r) for r in (*rows, *recovered, *diffs)]

    # The family, its FDR and the sweep's own run record land together or not at all.
    with wh.session() as session:
        # A rerun that found every member stored repeats the newest identical family.
        twin = families.same_family(session, identity_sha256, members)
        if twin is not None and twin.sweep_id != sweep_id:
            families.discard_sweep(session, sweep_id)
            return SweepResult(
                sweep_id=twin.sweep_id,
                analysis_id=twin.analysis_id,
                seed=sweep_seed,
                rows=_reload(wh, rows),
                recovery=recovered,
                p_fdr=families.sweep_fdr(session, twin.sweep_id),
                computed=0,
                skipped=skipped,
                reused=True,
                diffs=diffs,
            )
        record = dict(params)
        record["sweep_id"] = sweep_id
        record["skipped"] = [item.to_dict() for item in skipped]
        run = store.add_analysis_run(
            session,
            "sweep",
            record,
            seed=sweep_seed,
            input_hashes=hashes,
            device=device,
            seconds=time.perf_counter() - start,
            identity=params,
        )
        fdr = families.close_sweep(
            session,
            sweep_id,
            members,
            analysis_id=run.analysis_id,
            extra_params={"skipped": record["skipped"]},
        )
    fault_point("sweep.closed")
    return SweepResult(
        sweep_id=sweep_id,
        analysis_id=run.analysis_id,
        seed=sweep_seed,
        rows=_reload(wh, rows),
        recovery=recovered,
        p_fdr=fdr,
        computed=computed,
        skipped=skipped,
        diffs=diffs,
    )


def _check_tests_and_spaces(
    options: Sequence[ComparisonOptions | MeasureOptions],
    layers: Sequence[Space],
    words: dict[str, SpaceVectors],
) -> None:
    """Refuse, before a sweep is recorded, tests that cannot run on its spaces: a measure
    of feature vectors against an RDM word space, or a k-NN k not below the concepts a
    layer and a word space can share."""
    measures = [o.test for o in options if isinstance(o, MeasureOptions)]
    normalised = {getattr(o, "normalise", "none") for o in options} - {"none"}
    for name, space in words.items():
        if normalised and space.kind != "rdm":
            raise ConfigError(
                f"--normalise {normalised.pop()} rescales the subjects' matrices of RDM targets; "
                f"--words {name!r} is a {space.kind or 'vector'} space (sweep RDMs separately)"
            )
        if space.kind == "rdm" and measures:
            raise ConfigError(
                f"--words {name!r} is an RDM, which has no feature vectors: --tests "
                f"{','.join(measures)} need them (an RDM takes rsa and 2v2)"
            )
    for opts in options:
        if isinstance(opts, MeasureOptions) and opts.test == "knn" and opts.k is not None:
            for name, space in words.items():
                for layer in layers:
                    n = min(len(space.wnids), int(layer.n_concepts))
                    if opts.k > n - 1:
                        raise ConfigError(
                            f"--k {opts.k}: layer {layer.name!r} and word space {name!r} share "
                            f"at most {n} concepts, so k-NN needs --k from 1 to {n - 1}"
                        )


def _control_diffs(
    wh: Warehouse,
    rows: Sequence[store.ComparisonRow],
    sweep_seed: int | None,
    force: bool,
) -> list[ResultDiff]:
    """Each trained layer's result minus the same layer's result in its random control."""
    from semwh.runs.difference import diff_in, diff_inputs, diff_tests

    by_key = {(store.test_of(r), r.space_a, r.space_b): r for r in rows}
    out: list[ResultDiff] = []
    for (test, space_a, space_b), row in by_key.items():
        model, sep, layer = space_a.partition("/")
        if test not in diff_tests() or not sep or model.endswith(RANDOM_SUFFIX):
            continue
        control = by_key.get((test, f"{model}{RANDOM_SUFFIX}/{layer}", space_b))
        if control is None:
            continue
        inputs = diff_inputs(wh, f"{test}:{row.result_id}", f"{test}:{control.result_id}")
        seed = None
        if sweep_seed is not None:
            seed = derive_seed(sweep_seed, "diff", test, space_a, control.space_a, space_b)
        with wh.session() as session:
            out.append(
                diff_in(
                    wh,
                    session,
                    inputs,
                    bootstrap=row.n_permutations,
                    permutations=row.n_permutations,
                    seed=seed,
                    force=force,
                )
            )
    return out


def _commit(
    wh: Warehouse,
    buffer: list[tuple[int, ResultRecord]],
    slots: list[store.ComparisonRow | Skipped | None],
) -> None:
    """Store the buffered records in one transaction and empty the buffer."""
    if not buffer:
        return
    with wh.session() as session:
        for index, record in buffer:
            slots[index] = save_in(session, record)
    buffer.clear()
    fault_point("sweep.committed")


def _reload(wh: Warehouse, rows: Sequence[store.ComparisonRow]) -> list[store.ComparisonRow]:
    with wh.session() as session:
        fresh = [store.get_comparison(session, store.test_of(r), r.result_id) for r in rows]
    return [row for row in fresh if row is not None]
