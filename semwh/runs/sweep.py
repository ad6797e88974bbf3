"""A sweep: every layer of some models against some word spaces, with one FDR family."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.progress import Progress, check_progress
from semwh.runs import families, result_rows
from semwh.runs.comparison import plan_comparison
from semwh.runs.levels import CONCEPTS, Items
from semwh.runs.provenance import derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec
from semwh.runs.recovery import recovery as run_recovery
from semwh.runs.runner import (
    COMMIT_EVERY,
    COMMIT_SECONDS,
    FamilyOptions,
    Mapper,
    Seeding,
    Skipped,
    TestOptions,
    check_neighbours,
    check_subject_bootstrap,
    check_targets,
    family_options,
    run_family,
    run_or_skip,
)
from semwh.testing.faults import fault_point
from semwh.validate import check_count
from semwh.vectors import SpaceVectors, layer_spaces, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ResultDiff, ResultRecovery, Space, Sweep, VisionModel
from semwh.warehouse.writers import transaction

RANDOM_SUFFIX = "-random"

__all__ = [
    "COMMIT_EVERY",
    "COMMIT_SECONDS",
    "RANDOM_SUFFIX",
    "Mapper",
    "Skipped",
    "SweepOptions",
    "SweepResult",
    "run_or_skip",
    "sweep",
    "sweep_models",
]


@dataclass
class SweepResult:
    """What a sweep stored.

    Attributes:
        sweep_id: The stored family (table ``sweeps``).
        analysis_id: The ``analysis_runs`` row of kind ``sweep``.
        seed: The sweep seed every comparison's seed was derived from (None: nothing random).
        rows: One stored row per comparison (RSA, 2 vs 2 or a measure).
        recovery: Stored recovery rows, when recovery was asked for.
        p_fdr: The sweep's Benjamini-Hochberg p-value of each member, by (test, result_id).
        computed: How many comparisons were computed (the rest were found stored).
        skipped: Comparisons left out as degenerate (none when ``strict``), and models left
            out of recovery because the test does not apply to them (test ``recovery``,
            ``space_a`` the model; :class:`semwh.runs.recovery.RecoverySkip`).
        reused: True when an identical family was already stored and is returned as it is.
        diffs: With ``control_diffs``, each trained layer's result minus its random
            control's (``results_diff``), members of the family as ``diff``.
    """

    sweep_id: int
    analysis_id: int | None
    seed: int | None
    rows: list[result_rows.ComparisonRow] = field(default_factory=list)
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


def bootstrap_seed(sweep_seed: int, model: str, target: str) -> int:
    """The bootstrap seed of every cell of ``model`` against ``target`` in a sweep of
    ``sweep_seed``: derived from the model and the target, never from the layer or the test,
    so that every layer of a model draws the same resamples and their intervals (and their
    differences) are paired."""
    return derive_seed(sweep_seed, "bootstrap", model, target)


def _specs(
    wh: Warehouse,
    layers: Sequence[Space],
    words: dict[str, SpaceVectors],
    hashes: dict[str, str | None],
    options: Sequence[TestOptions],
    strict: bool,
    items: Items = CONCEPTS,
    sweep_seed: int | None = None,
) -> Iterator[ComparisonSpec | Skipped]:
    """Specs in sweep order, loading each layer space once (at the level of ``items``); a
    spec with a bootstrap gets its model's and target's :func:`bootstrap_seed`."""
    for layer in layers:
        a = load_space(wh, layer.name, items.level)
        for word_name, b in words.items():
            for opts in options:
                input_hashes = {layer.name: hashes[layer.name], word_name: hashes[word_name]}
                if opts.bootstrap and sweep_seed is not None:
                    model = layer.model or layer.name.rpartition("/")[0]
                    parent = bootstrap_seed(sweep_seed, model, word_name)
                    opts = replace(opts, bootstrap_seed=parent)
                try:
                    yield plan_comparison(a, b, opts, input_hashes, items=items)
                except DegenerateInputError as exc:
                    if strict:
                        raise
                    yield Skipped(opts.test, layer.name, word_name, str(exc))


@dataclass(frozen=True)
class SweepOptions(FamilyOptions):
    """Everything a sweep does, apart from its models and word spaces (checked when made).

    The options of every family (:class:`semwh.runs.runner.FamilyOptions`: tests,
    permutations, seed, the tests' settings, device, force), and:

    Attributes:
        include_random: Also sweep ``MODEL-random`` models when they are stored.
        recovery: Also run 1 vs 2 recovery for each chosen model and word space.
        strict: Raise on a degenerate comparison instead of skipping it. A sweep skips them
            by default because one degenerate layer (the near-constant logits of a
            random-weight control, say) should not discard the rest; each skipped comparison
            and its reason are returned and recorded in the sweep's parameters.
        control_diffs: Also test, for every test but ``knn``, each layer of a model against
            the same layer of its ``-random`` control (:func:`semwh.runs.difference.diff`,
            ``permutations`` bootstrap resamples and sign flips); the differences join the
            sweep's family and its FDR.
        bootstrap: Bootstrap resamples of each cell's 95% interval (``ci_low``, ``ci_high``)
            for the tests that have one (RSA and 2 vs 2; 0: none), as ``analyze rsa
            --bootstrap`` draws them: over concepts (or the image level's unit), and against
            an RDM with subjects also over subjects and both. Every layer of a model against
            one target draws the same resamples (:func:`bootstrap_seed`).
    """

    include_random: bool = True
    recovery: bool = False
    strict: bool = False
    control_diffs: bool = False
    bootstrap: int = 0

    family = "sweep"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap", check_count(self.bootstrap, "bootstrap resamples"))
        super().__post_init__()
        if self.control_diffs and self.item_level == "image":
            raise ConfigError(
                "--diff-random differences are computed over concepts: run them in a "
                "concept-level sweep (without --level image)"
            )
        if self.control_diffs and not self.include_random:
            raise ConfigError(
                "--diff-random compares each layer with its random control, which --no-random "
                "leaves out: pass one or the other"
            )

    @property
    def cell_bootstrap(self) -> int:
        return self.bootstrap

    def params(self) -> dict[str, Any]:
        """The options in the sweep's recorded parameters (and identity)."""
        params: dict[str, Any] = {
            "tests": list(self.tests),
            "similarity": self.similarity,
            "method": self.method,
            "distance": self.distance,
            "tie_tol": float(self.tie_tol),
            "permutations": self.permutations,
            "include_random": self.include_random,
            "recovery": self.recovery,
        }
        # The measures' options join the sweep's identity only when it runs them, so that
        # the identity of a sweep of RSA and 2 vs 2 stays what it was.
        params.update(self.measure_settings())
        if self.control_diffs:
            params["control_diffs"] = True
        if self.bootstrap:
            # Only when asked for, so that the identity of a sweep without one stays.
            params["bootstrap"] = self.bootstrap
        if self.normalise != "none":
            params["normalise"] = self.normalise
        params.update(self.items.params())
        return params


def sweep(
    wh: Warehouse,
    models: Sequence[str],
    word_spaces: Sequence[str],
    options: SweepOptions | None = None,
    *,
    progress: Progress | None = None,
    mapper: Mapper = map,
    **settings: Any,
) -> SweepResult:
    """Compare every layer space of ``models`` with every word space and store the results.

    Each comparison's seed is derived from the sweep seed and the comparison's identity
    (:func:`semwh.runs.provenance.derive_seed` of the test and both spaces), so the numbers do
    not depend on the order or the backend that ran them; with ``bootstrap``, its bootstrap
    seed from the sweep seed, the model and the target (:func:`bootstrap_seed`), so every
    layer of a model draws the same resamples. Both are stored with the result
    (``results.seed``, ``results.bootstrap_seed``): the single analysis given them
    (``compare(..., seed=, bootstrap=, bootstrap_seed=)``) reproduces the cell exactly.
    Comparisons already stored are reused (with no ``seed`` given, a stored row of any seed
    counts, but not for a sweep with a bootstrap) unless ``force``, which computes them again
    as new rows.

    The sweep is a stored family (``sweeps``, ``sweep_members``, view ``sweep_results``):
    Benjamini-Hochberg FDR over every p-value of its tests, recovery included, is stored with
    it and never changes afterwards, whatever runs later. A rerun that finds every member
    stored and exactly the family of the newest identical sweep returns that sweep.

    Args:
        wh: The warehouse.
        models: Vision model names; their ``-random`` controls join when ``include_random``.
        word_spaces: Word (or external, or RDM) space names.
        options: The sweep's :class:`SweepOptions` (default: its defaults).
        progress: Told the comparisons done (``sweep``), stored ones found included.
        mapper: Maps :func:`run_comparison` over specs (``map`` runs them here, in order;
            :func:`semwh.ray.sweep_mapper` gives the Ray one).
        **settings: The fields of :class:`SweepOptions` as keywords (``tests=["rsa"]``,
            ``permutations=100``...), replacing those of ``options``.

    Raises:
        ConfigError: Unknown option values or no tests.
        NotFoundError: Unknown models or spaces, or a model without layer spaces.
        DegenerateInputError: With ``strict``, a degenerate comparison (the message names
            the concepts and spaces).
    """
    check_progress(progress)
    opts = family_options(SweepOptions, options, settings)
    tests = opts.test_options
    needs_seed = any(o.needs_seed for o in tests)
    sweep_seed = opts.seed if opts.seed is not None else (draw_seed() if needs_seed else None)
    chosen = sweep_models(wh, models, opts.include_random)
    layers: list[Space] = []
    for model in chosen:
        with wh.session() as session:
            model_layers = layer_spaces(session, model)
        if not model_layers:
            raise NotFoundError(
                f"vision model {model!r} has no layer spaces: run `semwh extract` for it first"
            )
        layers.extend(model_layers)
    words = {name: load_space(wh, name, opts.item_level) for name in dict.fromkeys(word_spaces)}
    if not words:
        raise ConfigError("a sweep needs at least one word space (--words)")
    check_targets(tests, words, "--words", "sweep RDMs separately")
    check_subject_bootstrap(tests, words)
    for name, space in words.items():
        for layer in layers:
            shared = len(space.concept_ids)
            if opts.item_level == "concept":
                shared = min(shared, int(layer.n_concepts))
            check_neighbours(
                tests, shared, f"layer {layer.name!r} and word space {name!r} share at most"
            )
    hashes = {row.name: row.content_sha256 for row in layers}
    with wh.session() as session:
        for name in words:
            hashes[name] = session.scalar(select(Space.content_sha256).where(Space.name == name))

    params: dict[str, Any] = {
        "models": list(models),
        "swept_models": chosen,
        "word_spaces": list(words),
        **opts.params(),
        "seed": sweep_seed,
    }
    family = transaction(
        wh,
        lambda session: families.open_sweep(
            session,
            models=chosen,
            word_spaces=list(words),
            tests=[o.test for o in tests] + (["recovery"] if opts.recovery else []),
            n_permutations=opts.permutations,
            seed=sweep_seed,
            params=params,
        ),
        what="opening a sweep",
    )
    sweep_id = family.sweep_id
    identity_sha256 = json.loads(family.params)["identity_sha256"]
    with families.failed_on_error(wh, sweep_id):
        return _run_sweep(
            wh,
            opts,
            sweep_id=sweep_id,
            identity_sha256=identity_sha256,
            params=params,
            models=models,
            layers=layers,
            words=words,
            hashes=hashes,
            sweep_seed=sweep_seed,
            progress=progress,
            mapper=mapper,
        )


def _run_sweep(
    wh: Warehouse,
    opts: SweepOptions,
    *,
    sweep_id: int,
    identity_sha256: str,
    params: dict[str, Any],
    models: Sequence[str],
    layers: Sequence[Space],
    words: dict[str, SpaceVectors],
    hashes: dict[str, str | None],
    sweep_seed: int | None,
    progress: Progress | None,
    mapper: Mapper,
) -> SweepResult:
    """Compute or find every member of an opened sweep, then close it with its FDR."""
    start = time.perf_counter()
    ran = run_family(
        wh,
        _specs(wh, layers, words, hashes, opts.test_options, opts.strict, opts.items, sweep_seed),
        total=len(layers) * len(words) * len(opts.test_options),
        # Without a seed a stored row of any seed counts, but not for intervals: those of
        # rows from elsewhere were not drawn with the resamples of the model's other layers.
        seeding=Seeding(
            sweep_seed, per_comparison=True, any_stored=opts.seed is None and not opts.bootstrap
        ),
        family="sweep",
        force=opts.force,
        strict=opts.strict,
        progress=progress,
        mapper=mapper,
    )
    rows, skipped = ran.rows, ran.skipped

    recovered: list[ResultRecovery] = []
    if opts.recovery:
        for model in models:
            for word in words:
                report = run_recovery(wh, model, word, force=opts.force)
                recovered.extend(report.rows)
                # A model whose classes are not the images' concepts is left out of the
                # family with its reason, as a degenerate comparison is (even with strict:
                # the test does not apply, nothing is wrong with the inputs).
                skipped.extend(
                    Skipped("recovery", model, word, item.reason) for item in report.skipped
                )
    diffs = _control_diffs(wh, rows, sweep_seed, opts.force) if opts.control_diffs else []
    members = [families.member(r) for r in (*rows, *recovered, *diffs)]

    # The family, its FDR and the sweep's own run record land together or not at all (the
    # transaction runs again from the start when the server gives up on it).
    def close(session: Session) -> tuple[Sweep | None, int | None, families.FDR]:
        # A rerun that found every member stored repeats the newest identical family.
        twin = families.same_family(session, identity_sha256, members)
        if twin is not None and twin.sweep_id != sweep_id:
            families.discard_sweep(session, sweep_id)
            return twin, twin.analysis_id, families.sweep_fdr(session, twin.sweep_id)
        record = dict(params)
        record["sweep_id"] = sweep_id
        record["skipped"] = [item.to_dict() for item in skipped]
        run = result_rows.add_analysis_run(
            session,
            "sweep",
            record,
            seed=sweep_seed,
            input_hashes=hashes,
            device=opts.device,
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
        return None, run.analysis_id, fdr

    twin, analysis_id, fdr = transaction(wh, close, what=f"closing sweep {sweep_id}")
    if twin is not None:
        return SweepResult(
            sweep_id=twin.sweep_id,
            analysis_id=analysis_id,
            seed=sweep_seed,
            rows=_reload(wh, rows),
            recovery=recovered,
            p_fdr=fdr,
            computed=0,
            skipped=skipped,
            reused=True,
            diffs=diffs,
        )
    fault_point("sweep.closed")
    return SweepResult(
        sweep_id=sweep_id,
        analysis_id=analysis_id,
        seed=sweep_seed,
        rows=_reload(wh, rows),
        recovery=recovered,
        p_fdr=fdr,
        computed=ran.computed,
        skipped=skipped,
        diffs=diffs,
    )


def _control_diffs(
    wh: Warehouse,
    rows: Sequence[result_rows.ComparisonRow],
    sweep_seed: int | None,
    force: bool,
) -> list[ResultDiff]:
    """Each trained layer's result minus the same layer's result in its random control."""
    from semwh.runs.difference import diff_in, diff_inputs, diff_tests

    by_key = {(result_rows.test_of(r), r.space_a, r.space_b): r for r in rows}
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
        store = functools.partial(
            diff_in,
            wh,
            inputs=inputs,
            bootstrap=row.n_permutations,
            permutations=row.n_permutations,
            seed=seed,
            force=force,
        )
        out.append(transaction(wh, store, what=f"control difference of {row.space_a}"))
    return out


def _reload(
    wh: Warehouse, rows: Sequence[result_rows.ComparisonRow]
) -> list[result_rows.ComparisonRow]:
    with wh.session() as session:
        fresh = [
            result_rows.get_comparison(session, result_rows.test_of(r), r.result_id) for r in rows
        ]
    return [row for row in fresh if row is not None]
