"""What RSA and 2 vs 2 share: measures of two concept similarity matrices.

Space A always gives its similarity matrix; space B gives its own, or, for a target with
subjects (an RDM space), the stack of its subjects' similarity matrices. Against subjects
every statistic is computed per subject and averaged (rsatoolbox's ``eval_fixed``): the same
seed for every subject, so the same relabellings and resamples; each subject's value, the
noise ceiling with the same comparator and the inference over subjects go to ``extra``.
:mod:`semwh.measures.rsa` and :mod:`semwh.measures.two_vs_two` supply the per-matrix
statistic, null, p-value rule, bootstrap and weighted form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from semwh.analyze import DISTANCES, RSA_METHODS, SIMILARITY_METRICS, TIE_TOL, similarity_matrix
from semwh.analyze.subjects import (
    Comparator,
    check_normalise,
    concept_bootstrap,
    dual_bootstrap,
    per_subject_resampled,
    subject_bootstrap,
    subject_ceiling,
    subject_tests,
)
from semwh.errors import ConfigError, DegenerateInputError
from semwh.measures.base import (
    SIMILARITIES,
    Allocate,
    ComparisonSpec,
    Measure,
    Options,
    WeightedStatistic,
    check_choice,
    check_device,
    check_seed,
)
from semwh.seeds import derive_seed
from semwh.validate import check_count


@dataclass(frozen=True)
class SimilarityOptions(Options):
    """Options of a measure of two similarity matrices (RSA, 2 vs 2).

    Attributes:
        similarity: How concept similarity matrices are built (pearson, spearman, cosine).
        method: RSA correlation of the two upper triangles (RSA only).
        distance: Row distance of the 2 vs 2 test (2 vs 2 only).
        tie_tol: 2 vs 2 tie tolerance (2 vs 2 only; None for RSA).
        normalise: How each subject's RDM of a target with subjects is rescaled before it is
            compared (``none``, ``zscore`` or ``rank`` of its off-diagonal entries); only
            ``none`` applies to a target without subjects.
    """

    similarity: str = "pearson"
    method: str | None = None
    distance: str | None = None
    tie_tol: float | None = None
    normalise: str = "none"

    @classmethod
    def make(
        cls,
        test: str,
        *,
        similarity: str = "pearson",
        method: str = "spearman",
        distance: str = "pearson",
        permutations: int = 0,
        seed: int | None = None,
        bootstrap: int = 0,
        device: str = "cpu",
        tie_tol: float = TIE_TOL,
        normalise: str = "none",
    ) -> SimilarityOptions:
        """Validated options; the metric that does not apply to ``test`` is dropped."""
        check_choice(test, ("rsa", "2v2"), "test")
        check_choice(similarity, SIMILARITY_METRICS, "similarity metric")
        if test == "rsa":
            check_choice(method, RSA_METHODS, "RSA method")
        else:
            check_choice(distance, DISTANCES, "2 vs 2 distance")
        seed = check_seed(seed)
        if not (
            isinstance(tie_tol, int | float)
            and not isinstance(tie_tol, bool)
            and 0 <= float(tie_tol) < 1
        ):
            raise ConfigError(f"2 vs 2 tie tolerance must be in [0, 1), got {tie_tol!r}")
        return cls(
            test=test,
            similarity=similarity,
            method=method if test == "rsa" else None,
            distance=distance if test == "2v2" else None,
            permutations=check_count(permutations, "permutations"),
            seed=seed,
            bootstrap=check_count(bootstrap, "bootstrap resamples"),
            device=check_device(device),
            tie_tol=float(tie_tol) if test == "2v2" else None,
            normalise=check_normalise(normalise),
        )

    def settings(self) -> dict[str, Any]:
        """The measure's own options: similarity and method, or similarity, distance and tie
        tolerance (``normalise`` is recorded in the result's ``target``)."""
        if self.test == "rsa":
            return {"similarity": self.similarity, "method": self.method}
        return {"similarity": self.similarity, "distance": self.distance, "tie_tol": self.tie_tol}

    @property
    def metric(self) -> str:
        """The test-specific metric: the RSA method or the 2 vs 2 distance."""
        value = self.method if self.test == "rsa" else self.distance
        assert value is not None
        return value

    @property
    def variant(self) -> str:
        return self.metric


class SimilarityMeasure(Measure):
    """A measure of two similarity matrices; subclasses supply the per-matrix functions."""

    inputs: ClassVar[str] = SIMILARITIES
    options_type: ClassVar[type[Options]] = SimilarityOptions
    #: The option field that holds the metric (``method`` or ``distance``).
    metric_field: ClassVar[str]

    def settings_map(self) -> dict[str, str]:
        own = {"similarity": "similarity", self.metric_field: self.metric_field}
        if self.name == "2v2":
            own["tie_tol"] = "tie_tol"
        return {**own, "normalise": "normalise"}

    def defaults(self) -> dict[str, Any]:
        made = SimilarityOptions.make(self.name)
        return {k: getattr(made, k) for k in (*made.settings(), "normalise")}

    def build(self, common: dict[str, Any], own: dict[str, Any]) -> Options:
        return SimilarityOptions.make(self.name, **common, **self.read_text(own))

    @property
    def has_bootstrap(self) -> bool:
        return True

    # -- per matrix, supplied by the subclass ------------------------------------------------

    #: Whether the per-matrix statistic can return each pair's decision (2 vs 2).
    keeps_pairs: ClassVar[bool] = False

    def kernel_options(self, opts: SimilarityOptions) -> dict[str, Any]:
        """The keyword arguments of the measure's kernels (``method=`` or ``distance=``,
        ``tie_tol=``)."""
        raise NotImplementedError

    #: The statistic of one matrix pair (:func:`semwh.analyze.rsa`...), its null over
    #: permutations ``start..stop-1`` and its concept-bootstrap interval (``values``: the
    #: resampled statistics); called with the matrices and :meth:`kernel_options`.
    compute: ClassVar[Callable[..., Any]]
    compute_null: ClassVar[Callable[..., np.ndarray]]
    compute_bootstrap: ClassVar[Callable[..., Any]]

    def unpack(self, result: Any) -> tuple[float, np.ndarray | None, int | None, Any]:
        """(statistic, null or None, number of pairs or None, pair decisions or None)."""
        raise NotImplementedError

    def one_weighted(
        self, spec: ComparisonSpec, opts: SimilarityOptions, sim_a: np.ndarray, sim_b: np.ndarray
    ) -> WeightedStatistic:
        """The statistic of one matrix pair as a function of concept counts."""
        raise NotImplementedError

    def one(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        keep_pairs: bool,
    ) -> tuple[float, np.ndarray | None, int | None, np.ndarray | None]:
        """(statistic, null or None, number of pairs or None, pair decisions or None)."""
        extra = {"return_pairs": keep_pairs} if self.keeps_pairs else {}
        result = self.compute(
            sim_a,
            sim_b,
            backend=backend(opts),
            device=opts.device,
            **self.kernel_options(opts),
            **common,
            **extra,
        )
        return self.unpack(result)

    def one_null(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        start: int,
        stop: int,
    ) -> np.ndarray:
        return self.compute_null(
            sim_a,
            sim_b,
            start=start,
            stop=stop,
            backend=backend(opts),
            device=opts.device,
            **self.kernel_options(opts),
            **common,
        )

    def one_bootstrap(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        boot: dict[str, Any],
    ) -> Any:
        return self.compute_bootstrap(sim_a, sim_b, **self.kernel_options(opts), **boot)

    # -- the shared machinery -----------------------------------------------------------------

    def statistic(self, spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
        opts = _opts(spec)
        sim_a, sims_b, common = inputs(spec, allocate)
        values: list[float] = []
        nulls: list[np.ndarray] = []
        n_pairs = None
        # A subject bootstrap of 2 vs 2 reuses each subject's pair decisions.
        keep_pairs = spec.subjects is not None and opts.bootstrap > 0
        decisions: list[np.ndarray] = []
        for subject, sim_b in targets(spec, sims_b):
            with subject_naming(subject):
                value, null, pairs, decided = self.one(sim_a, sim_b, opts, common, keep_pairs)
            values.append(float(value))
            if pairs is not None:
                n_pairs = int(pairs)
            if decided is not None:
                decisions.append(decided)
            if opts.permutations > 0:
                nulls.append(np.asarray(null, dtype=np.float64))
        statistic = float(np.mean(values)) if len(values) > 1 else values[0]
        # The statistic itself is computed on the CPU; the device runs the Mantel null.
        numbers: dict[str, Any] = {"statistic": statistic, "device": opts.device}
        if n_pairs is not None:
            numbers["n_pairs"] = n_pairs
        if opts.permutations > 0:
            null = subject_mean(nulls)
            numbers["p_value"] = float(self.p_value(statistic, null))
            numbers["null"] = null
        if spec.subjects is None:
            if opts.bootstrap > 0:
                # Its own stream, derived from the recorded seed (or the recorded bootstrap
                # seed), so that adding a bootstrap never changes the permutations.
                seed = derive_seed(opts.bootstrap_parent(), "bootstrap")
                ci = self.interval(spec, sim_a, sims_b, opts.bootstrap, seed)
                numbers["ci_low"], numbers["ci_high"] = finite(ci.low), finite(ci.high)
            return numbers
        numbers["extra"] = self.subject_extra(
            spec, sim_a, sims_b, values, common["seed"], decisions or None
        )
        concept = numbers["extra"]["intervals"].get("bootstrap_concepts")
        if concept is not None:
            numbers["ci_low"], numbers["ci_high"] = concept.low, concept.high
        return numbers

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        opts = _opts(spec)
        sim_a, sims_b, common = inputs(spec)
        nulls = []
        for subject, sim_b in targets(spec, sims_b):
            with subject_naming(subject):
                null = self.one_null(sim_a, sim_b, opts, common, start, stop)
            nulls.append(np.asarray(null, dtype=np.float64))
        # Every subject's null uses the same seed, hence the same relabellings: permutation
        # k of the mean is the mean of each subject's permutation k.
        return subject_mean(nulls)

    def comparator(self, opts: SimilarityOptions) -> Comparator:
        """The per-subject comparison of ``opts`` (also the noise ceiling's)."""
        return Comparator(opts.test, opts.metric, tie_tol(opts) if opts.test == "2v2" else 0.0)

    def interval(
        self,
        spec: ComparisonSpec,
        sim_a: np.ndarray,
        sims_b: np.ndarray,
        n_bootstrap: int,
        seed: int,
    ) -> Any:
        """The concept-bootstrap interval of the statistic (its mean over subjects) from
        ``n_bootstrap`` resamples drawn from ``seed``; ``values`` holds the resampled
        statistics. Every spec over the same concepts draws the same resamples."""
        opts = _opts(spec)
        if spec.subjects is not None:
            return concept_bootstrap(
                per_subject_resampled(sim_a, sims_b, self.comparator(opts)),
                spec.n_concepts,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
        boot: dict[str, Any] = dict(
            n_bootstrap=n_bootstrap,
            seed=seed,
            labels=list(spec.concept_ids),
            space_a=spec.space_a,
            space_b=spec.space_b,
        )
        return self.one_bootstrap(sim_a, sims_b, opts, boot)

    def resampled(self, spec: ComparisonSpec, n_bootstrap: int, seed: int) -> np.ndarray:
        """The statistic (its mean over subjects) on ``n_bootstrap`` concept resamples drawn
        from ``seed``, with the self-pairs of a duplicated concept left out as the
        bootstrap interval does (:mod:`semwh.analyze.bootstrap`)."""
        sim_a, sims_b, _ = inputs(spec)
        return np.asarray(self.interval(spec, sim_a, sims_b, n_bootstrap, seed).values)

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        opts = _opts(spec)
        sim_a, sims_b, _ = inputs(spec)
        if spec.subjects is not None:
            # A target with subjects: the mean over subjects of each subject's statistic.
            per_subject = [self.one_weighted(spec, opts, sim_a, sim_b) for sim_b in sims_b]
            if len(per_subject) == 1:
                return per_subject[0]
            return lambda w: float(np.mean([stat(w) for stat in per_subject]))
        return self.one_weighted(spec, opts, sim_a, sims_b)

    def subject_extra(
        self,
        spec: ComparisonSpec,
        sim_a: np.ndarray,
        sims_b: np.ndarray,
        values: list[float],
        seed: int,
        decisions: list[np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Per-subject values, noise ceiling and inference over subjects of an RDM target
        (``decisions``: each subject's 2 vs 2 pair decisions, when already computed).

        The bootstraps over concepts, subjects and both draw from streams derived from the
        options' bootstrap seed (``seed`` unless one is given); the sign-flip test from
        ``seed``."""
        opts = _opts(spec)
        parent = opts.bootstrap_seed if opts.bootstrap_seed is not None else seed
        assert spec.subjects is not None
        comparator = self.comparator(opts)
        extra: dict[str, Any] = {
            "subjects": list(spec.subjects),
            "subject_values": values,
            "ceiling": None,
            "tests": [],
            "intervals": {},
        }
        if opts.bootstrap > 0:
            resampled = per_subject_resampled(sim_a, sims_b, comparator, decisions)
            extra["intervals"]["bootstrap_concepts"] = concept_bootstrap(
                resampled,
                spec.n_concepts,
                n_bootstrap=opts.bootstrap,
                seed=derive_seed(parent, "bootstrap"),
            )
        if len(values) < 2:
            return extra
        extra["ceiling"] = subject_ceiling(-sims_b, comparator)
        extra["tests"] = subject_tests(
            values, comparator.chance, seed=derive_seed(seed, "sign-flip")
        )
        if opts.bootstrap > 0:
            extra["intervals"]["bootstrap_subjects"] = subject_bootstrap(
                values, n_bootstrap=opts.bootstrap, seed=derive_seed(parent, "subject-bootstrap")
            )
            extra["intervals"]["bootstrap_dual"] = dual_bootstrap(
                values,
                resampled,
                spec.n_concepts,
                comparator.chance,
                n_bootstrap=opts.bootstrap,
                seed=derive_seed(parent, "dual-bootstrap"),
            )
        return extra


def _opts(spec: ComparisonSpec) -> SimilarityOptions:
    opts = spec.options
    assert isinstance(opts, SimilarityOptions)
    return opts


def inputs(
    spec: ComparisonSpec, allocate: Allocate | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The two similarity matrices (B: the subjects' stack for a target with subjects) and
    the arguments every statistic of the spec takes."""
    opts = _opts(spec)
    labels = list(spec.concept_ids)
    n = len(labels)

    def matrix(vectors: np.ndarray, space: str) -> np.ndarray:
        out = None if allocate is None else allocate(n)
        return similarity_matrix(
            vectors, metric=opts.similarity, labels=labels, space=space, out=out
        )

    sim_a = matrix(spec.a, spec.space_a)
    sim_b = spec.b if spec.subjects is not None else matrix(spec.b, spec.space_b)
    common: dict[str, Any] = dict(
        n_permutations=opts.permutations,
        seed=opts.seed if opts.seed is not None else 0,
        labels=labels,
        space_a=spec.space_a,
        space_b=spec.space_b,
    )
    return sim_a, sim_b, common


def targets(spec: ComparisonSpec, sims_b: np.ndarray) -> list[tuple[str | None, np.ndarray]]:
    """(subject, similarity matrix) of each matrix B is compared through (one, unnamed, for
    a space of vectors)."""
    if spec.subjects is None:
        return [(None, sims_b)]
    return list(zip(spec.subjects, sims_b, strict=True))


def subject_mean(values: list[np.ndarray]) -> np.ndarray:
    """The mean over subjects, summed in subject order (one subject: its values as they are)."""
    if len(values) == 1:
        return values[0]
    return np.mean(np.stack(values), axis=0)


@contextmanager
def subject_naming(subject: str | None) -> Iterator[None]:
    """Name the subject in a degenerate-input error of a target with subjects."""
    if subject is None:
        yield
        return
    try:
        yield
    except DegenerateInputError as exc:
        raise DegenerateInputError(f"against subject {subject!r}: {exc}") from exc


def backend(opts: SimilarityOptions) -> str:
    """The backend of the kernels: torch (float64 on the device) off the CPU, else numpy."""
    return "torch" if opts.device != "cpu" else "numpy"


def tie_tol(opts: SimilarityOptions) -> float:
    return TIE_TOL if opts.tie_tol is None else opts.tie_tol


def finite(value: float) -> float | None:
    """None for a NaN bound (every resample degenerate) rather than a NaN in the table."""
    return float(value) if np.isfinite(value) else None
