"""The one loop of every family of comparisons: sweeps, grids and peak-layer tests.

A family plans its comparisons (specs, in its own order) and hands them to :func:`run_family`,
which resolves each spec's seed by the family's :class:`Seeding`, finds the stored ones in one
registry session, refuses the family before anything runs when it cannot fit in memory, maps
the pure :func:`semwh.runs.comparison.run_comparison` over the rest with the family's mapper
(builtin ``map`` here, :func:`semwh.ray.sweep_mapper` for the Ray backend), stores the records
in small batches, reports progress, and returns a stored row (or a :class:`Skipped`) per spec,
in spec order. What a family does with them (its FDR, its max-statistic test) is its own.

:class:`FamilyOptions` are the options every family shares: its tests and the settings each
test takes (:func:`semwh.runs.options.options_for`), checked once when they are made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from semwh import measures
from semwh.analyze import TIE_TOL
from semwh.analyze.knn import DEFAULT_K
from semwh.analyze.regression import DEFAULT_PENALTIES
from semwh.errors import ConfigError, DegenerateInputError
from semwh.measures import SIMILARITIES, Options
from semwh.measures.similarity import SimilarityOptions
from semwh.names import name_list
from semwh.progress import Progress, report
from semwh.runs import result_rows
from semwh.runs.comparison import lookup_in, run_comparison, store_records, with_seed
from semwh.runs.levels import Items
from semwh.runs.options import (
    check_choice,
    check_count,
    check_seed,
)
from semwh.runs.plan import check_specs
from semwh.runs.provenance import derive_seed
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.testing.faults import fault_point
from semwh.vectors import SpaceVectors
from semwh.warehouse.layout import Warehouse

#: Computed comparisons are committed at least this often (count, seconds).
COMMIT_EVERY = 64
COMMIT_SECONDS = 30.0

#: A mapper maps the pure per-comparison function over specs, yielding the outcomes in the
#: order of the specs (builtin ``map`` runs them here; :mod:`semwh.ray` has the Ray one).
Mapper = Callable[
    [Callable[[ComparisonSpec], ResultRecord], Iterable[ComparisonSpec]], Iterable[ResultRecord]
]

#: The options of one test of a family (any registered measure's).
TestOptions = Options


@dataclass(frozen=True)
class Skipped:
    """A comparison a family left out because its input is degenerate, or a model a sweep's
    recovery left out because the test does not apply to it (test ``recovery``, ``space_a``
    the model)."""

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


@dataclass(frozen=True)
class Seeding:
    """How a family gives its comparisons their seeds.

    Attributes:
        seed: The family's seed (None: nothing of the family is random).
        per_comparison: Each comparison gets a seed derived from the family's seed and its
            identity (test, both spaces; a sweep: the numbers do not depend on the order or
            the backend). False gives every comparison the family's seed itself (a grid:
            permutation k relabels side B's concepts alike in every cell).
        any_stored: A stored row of any seed counts as the same analysis (a sweep given no
            seed); otherwise only rows of the seed this rule gives.
    """

    seed: int | None
    per_comparison: bool = True
    any_stored: bool = False

    def apply(self, spec: ComparisonSpec) -> ComparisonSpec:
        """``spec`` with its seed (unchanged when nothing of it is random)."""
        if self.seed is None or not spec.options.needs_seed:
            return spec
        if not self.per_comparison:
            return with_seed(spec, self.seed)
        opts = spec.options
        return with_seed(spec, derive_seed(self.seed, opts.test, spec.space_a, spec.space_b))

    def lookup_key(self, spec: ComparisonSpec) -> ComparisonSpec:
        """The spec a stored row is looked up by."""
        return spec if self.any_stored else self.apply(spec)


@dataclass
class FamilyRun:
    """What :func:`run_family` found and stored.

    Attributes:
        outcomes: One stored row or :class:`Skipped` per spec, in spec order.
        computed: How many comparisons were computed (the rest were found stored or skipped).
    """

    outcomes: list[result_rows.ComparisonRow | Skipped] = field(default_factory=list)
    computed: int = 0

    @property
    def rows(self) -> list[result_rows.ComparisonRow]:
        return [o for o in self.outcomes if not isinstance(o, Skipped)]

    @property
    def skipped(self) -> list[Skipped]:
        return [o for o in self.outcomes if isinstance(o, Skipped)]


def run_family(
    wh: Warehouse,
    specs: Iterable[ComparisonSpec | Skipped],
    *,
    total: int,
    seeding: Seeding,
    family: str,
    what: str | None = None,
    force: bool = False,
    strict: bool = False,
    progress: Progress | None = None,
    mapper: Mapper = map,
    held_values: Mapping[str, int] | None = None,
) -> FamilyRun:
    """Find or compute and store every comparison of a family, in spec order.

    Args:
        wh: The warehouse.
        specs: The family's comparisons (unseeded; :class:`Skipped` for those its planning
            found degenerate), read once, inside the lookup session (a sweep loads each
            layer while they are read).
        total: How many ``specs`` there are, for progress.
        seeding: How each comparison gets its seed and which stored rows count.
        family: ``sweep`` or ``grid``: the family named when it cannot fit.
        what: The progress description (default: ``family``).
        force: Compute stored comparisons again (new rows; the old ones stay as history).
        strict: Raise on a degenerate comparison instead of returning it as skipped.
        progress: Told the comparisons done, stored ones found and skipped ones included.
        mapper: Maps the per-comparison function over the specs to compute.
        held_values: Values the family reads back at once after the loop, by the option
            that sets their count (:func:`semwh.runs.plan.check_specs`).

    Raises:
        ResourceError: The largest comparison and what the family holds do not fit.
        DegenerateInputError: With ``strict``, a degenerate comparison.
    """
    what = what or family
    slots: list[result_rows.ComparisonRow | Skipped | None] = []
    pending: list[tuple[int, ComparisonSpec]] = []
    done = 0
    report(progress, what, done, total)
    # One session for every lookup: opening a registry connection costs more than a query.
    with wh.session() as session:
        for spec in specs:
            if isinstance(spec, Skipped):
                slots.append(spec)
            else:
                found = None if force else lookup_in(session, seeding.lookup_key(spec))
                if found is None:
                    pending.append((len(slots), seeding.apply(spec)))
                    slots.append(None)
                    continue
                slots.append(found)
            done += 1
            report(progress, what, done, total)
    # Refused before any comparison runs: the largest one, and the nulls waiting to be
    # stored or, for a family that reads values back afterwards (a grid's nulls), those
    # values: they are held after the loop, when no record waits, and outnumber its batch.
    check_specs(
        [spec for _, spec in pending],
        wh.tmp_root,
        family=family,
        held_members=0 if held_values else min(len(pending), COMMIT_EVERY) - 1,
        held_values=held_values,
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
        # Results are committed in small batches: an interrupted family keeps what it
        # computed, and a rerun finds those comparisons stored.
        if len(buffer) >= COMMIT_EVERY or time.perf_counter() - last_commit > COMMIT_SECONDS:
            _commit(wh, buffer, slots, reuse=not force)
            last_commit = time.perf_counter()
        done += 1
        report(progress, what, done, total)
    _commit(wh, buffer, slots, reuse=not force)
    computed = sum(1 for index, _ in pending if not isinstance(slots[index], Skipped))
    outcomes_in_order = [slot for slot in slots if slot is not None]
    assert len(outcomes_in_order) == len(slots)
    return FamilyRun(outcomes_in_order, computed)


def _commit(
    wh: Warehouse,
    buffer: list[tuple[int, ResultRecord]],
    slots: list[result_rows.ComparisonRow | Skipped | None],
    *,
    reuse: bool,
) -> None:
    """Store the buffered records in one transaction and empty the buffer; with ``reuse``,
    a comparison another process stored meanwhile keeps its row (no duplicate)."""
    if not buffer:
        return
    rows = store_records(wh, [record for _, record in buffer], reuse=reuse)
    for (index, _), row in zip(buffer, rows, strict=True):
        slots[index] = row
    buffer.clear()
    fault_point("sweep.committed")


@dataclass(frozen=True)
class FamilyOptions:
    """The options every family of comparisons shares (a sweep's, a grid's).

    Checked once, when made: an unknown test or option value is refused before anything is
    loaded. Each test takes the settings that apply to it and ignores the others
    (:func:`semwh.runs.options.options_for`).

    Attributes:
        tests: Any of ``2v2``, ``rsa``, ``cka`` (linear CKA), ``knn`` (mutual k-NN
            alignment) and ``reg2v2`` (regression 2 vs 2 from side A to side B), each once.
        permutations: Size of each permutation null.
        seed: The family's seed; None draws one and records it.
        similarity: Concept similarity of RSA and 2 vs 2.
        method: RSA correlation of the upper triangles.
        distance: 2 vs 2 row distance.
        tie_tol: 2 vs 2 tie tolerance.
        device: ``cpu``, ``cuda`` or ``auto``.
        force: Recompute stored comparisons (new rows; the old ones stay as history).
        normalise: How the subjects' matrices of an RDM target are rescaled (none, zscore,
            rank); RSA and 2 vs 2 against an RDM are the mean over its subjects.
        estimator: CKA estimator (``unbiased`` or ``biased``).
        k: Neighbours per concept of mutual k-NN alignment.
        regression_distance: Row distance of regression 2 vs 2 (``cosine`` or ``pearson``).
        penalties: Ridge penalty grid of regression 2 vs 2 (multiples of tr(Xc Xc')/n).
        item_level: ``concept`` or ``image`` (every cell over the stimuli its two spaces
            share; ``--level`` on the command line).
        permute: At the image level, the permutation scheme (``concepts``, ``images``,
            ``within-concept``; None: the default of :class:`semwh.runs.levels.Items`).
        resample: At the image level, the bootstrap unit (``concepts``, ``images``).
    """

    tests: Sequence[str] = ("2v2", "rsa")
    permutations: int = 1000
    seed: int | None = None
    similarity: str = "pearson"
    method: str = "spearman"
    distance: str = "pearson"
    tie_tol: float = TIE_TOL
    device: str = "cpu"
    force: bool = False
    normalise: str = "none"
    estimator: str = "unbiased"
    k: int = DEFAULT_K
    regression_distance: str = "cosine"
    penalties: Sequence[float] = DEFAULT_PENALTIES
    #: Own options of measures other than RSA and 2 vs 2, by measure (``{"procrustes":
    #: {"centre": False}}``; ``-o procrustes.centre=false``); they override the shared ones.
    measure_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    item_level: str = "concept"
    permute: str | None = None
    resample: str | None = None
    #: Each test's validated options (without a seed), in the order of ``tests``.
    test_options: tuple[TestOptions, ...] = field(init=False, repr=False, compare=False)

    #: What the family is called in messages.
    family = "family"

    def __post_init__(self) -> None:
        tests = name_list(self.tests, "tests")
        if not tests:
            raise ConfigError(
                f"a {self.family} needs at least one test (choose {', '.join(measures.names())})"
            )
        object.__setattr__(self, "tests", tuple(dict.fromkeys(tests)))
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "permutations", check_count(self.permutations, "permutations"))
        object.__setattr__(self, "penalties", tuple(self.penalties))
        self.items  # noqa: B018 - checks the level, scheme and unit now
        # The settings some measure takes from a family (the registry names them).
        settings = {
            name: getattr(self, name) for name in measures.setting_names() if hasattr(self, name)
        }
        given = {str(k): dict(v) for k, v in dict(self.measure_options).items()}
        for test in given:
            if test not in self.tests:
                raise ConfigError(
                    f"options of {test!r} given, but {test!r} is not among the tests "
                    f"({', '.join(self.tests)})"
                )
            if measures.get(test).inputs == SIMILARITIES:
                raise ConfigError(
                    f"{test} takes its options from the family's flags (--similarity, "
                    "--method, --distance, --tie-tol, --normalise), not from -o"
                )
        object.__setattr__(self, "measure_options", given)
        made = tuple(
            opts
            for test in self.tests
            for opts in self._options_of(check_choice(test, measures.names(), "test"), settings)
        )
        object.__setattr__(self, "test_options", made)

    @property
    def cell_bootstrap(self) -> int:
        """Bootstrap resamples of each cell's interval, for measures that have one (none
        but a sweep's)."""
        return 0

    @property
    def items(self) -> Items:
        """The family's level, permutation scheme and bootstrap unit."""
        return Items(self.item_level, self.permute, self.resample)

    def _options_of(self, test: str, settings: Mapping[str, Any]) -> list[Options]:
        """``test``'s options: the shared settings it takes, then its own given ones."""
        measure = measures.get(test)
        shared = {
            field: settings[name]
            for name, field in measure.settings_map().items()
            if name in settings
        }
        return [
            measure.make_options(
                permutations=self.permutations,
                seed=None,
                bootstrap=self.cell_bootstrap if measure.has_bootstrap else 0,
                device=self.device,
                **{**shared, **self.measure_options.get(test, {})},
            )
        ]

    def measure_settings(self) -> dict[str, dict[str, object]]:
        """The own options of every measure but RSA and 2 vs 2, by test (a family's identity
        records them; RSA's and 2 vs 2's are the family's own similarity, method...)."""
        out: dict[str, dict[str, object]] = {}
        for opts in self.test_options:
            if not isinstance(opts, SimilarityOptions):
                out[opts.test] = {k: v for k, v in opts.settings().items() if k != "measure"}
        return out


_Options = TypeVar("_Options", bound=FamilyOptions)


def family_options(
    kind: type[_Options], options: _Options | None, settings: Mapping[str, Any]
) -> _Options:
    """``options``, or made from keyword ``settings`` (the keyword spelling of a family's
    function), or ``options`` with ``settings`` replacing some of its fields.

    Raises:
        ConfigError: A setting that is not an option of ``kind``, or invalid values.
    """
    names = [f.name for f in fields(kind) if f.init]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown {kind.family} option(s) {', '.join(unknown)} (choose {', '.join(names)})"
        )
    if options is None:
        return kind(**settings)
    if not settings:
        return options
    given = {name: getattr(options, name) for name in names}
    return kind(**{**given, **settings})


def check_targets(
    options: Sequence[TestOptions], targets: Mapping[str, SpaceVectors], flag: str, hint: str
) -> None:
    """Refuse, before a family is recorded, tests that cannot run on its targets: a measure
    of feature vectors against an RDM, or a normalisation of a target without subjects.

    Args:
        options: The family's tests.
        targets: The spaces permutations relabel (side B), by name.
        flag: The option that named them, for the message (``--words``, ``--b``).
        hint: What to do instead with a normalisation, e.g. ``sweep RDMs separately``.
    """
    vector_tests = [o.test for o in options if measures.get(o.test).inputs != SIMILARITIES]
    normalised = {getattr(o, "normalise", "none") for o in options} - {"none"}
    for name, space in targets.items():
        if normalised and space.kind != "rdm":
            raise ConfigError(
                f"--normalise {normalised.pop()} rescales the subjects' matrices of RDM targets; "
                f"{flag} {name!r} is a {space.kind or 'vector'} space ({hint})"
            )
        if space.kind == "rdm" and vector_tests:
            raise ConfigError(
                f"{flag} {name!r} is an RDM, which has no feature vectors: --tests "
                f"{','.join(vector_tests)} need them (an RDM takes "
                f"{' and '.join(sorted(measures.similarity_measures(), key=_rsa_first))})"
            )


def check_subject_bootstrap(
    options: Sequence[TestOptions], targets: Mapping[str, SpaceVectors]
) -> None:
    """Refuse, before a family is recorded, a bootstrap too small for the subjects of an RDM
    target (it also resamples subjects, and both)."""
    from semwh.analyze.subjects import MIN_RESAMPLES

    n_bootstrap = max((o.bootstrap for o in options), default=0)
    if not 0 < n_bootstrap < MIN_RESAMPLES:
        return
    for name, space in targets.items():
        if space.kind != "rdm":
            continue
        n_subjects = len(space.subjects or ()) or space.matrix.shape[1] // len(space.concept_ids)
        if n_subjects > 1:
            raise ConfigError(
                f"--bootstrap {n_bootstrap}: against the {n_subjects} subjects of {name!r} the "
                f"bootstrap also resamples subjects (and both), which needs at least "
                f"{MIN_RESAMPLES} resamples"
            )


def check_neighbours(options: Sequence[TestOptions], shared: int, where: str) -> None:
    """Refuse a k-NN ``k`` not below the ``shared`` concepts of ``where`` (a message part:
    ``"layer 'x' and word space 'y' share at most"``)."""
    for opts in options:
        k = getattr(opts, "k", None)
        if k is not None and k > shared - 1:
            raise ConfigError(
                f"--k {k}: {where} {shared} concepts, so k-NN needs --k from 1 to {shared - 1}"
            )


def _rsa_first(name: str) -> tuple[bool, str]:
    return name != "rsa", name
