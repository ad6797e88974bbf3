"""What flows between the pure analysis step and storage: specs in, records out.

A :class:`ComparisonSpec` holds everything one comparison needs (the two spaces' vectors over
their shared concepts and the options with a resolved seed); :func:`semwh.runs.comparison.
run_comparison` turns it into a :class:`ResultRecord` without touching the warehouse, so any
mapper can fan the same function out and storage stays in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semwh.analyze.versions import analysis_version
from semwh.runs.options import ComparisonOptions, MeasureOptions


@dataclass(frozen=True)
class ComparisonSpec:
    """One comparison, ready to run.

    Attributes:
        space_a: Name of the first space (a layer, usually).
        space_b: Name of the second space (a word space, usually); permutations relabel it.
        wnids: The shared concepts K, sorted.
        a: Vectors of ``space_a`` over ``wnids`` (n x d_a, float64).
        b: Vectors of ``space_b`` over ``wnids`` (n x d_b, float64).
        options: Validated options; ``seed`` is resolved when permutations or bootstrap need it.
        input_hashes: Content hashes of the two spaces, by name.
        concepts_sha256: Hash of ``wnids``.
        subjects: For a target with subjects (an RDM space), the subjects' ids; ``b`` is
            then the (subjects, n, n) stack of their similarity matrices over ``wnids``
            (minus each subject's dissimilarities, after the options' normalisation), and
            every statistic is computed per subject and averaged. None for a space of
            vectors.
    """

    space_a: str
    space_b: str
    wnids: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    options: ComparisonOptions | MeasureOptions
    input_hashes: dict[str, str | None]
    concepts_sha256: str
    subjects: tuple[str, ...] | None = None

    @property
    def n_concepts(self) -> int:
        return len(self.wnids)

    @property
    def b_is_similarity(self) -> bool:
        """``b`` holds similarity matrices (a target with subjects), not vectors."""
        return self.subjects is not None

    @property
    def target(self) -> str | None:
        """How space B was turned into what the measure compares (part of the reuse key):
        ``subjects:NORMALISE`` for a target with subjects, None for vectors."""
        if self.subjects is None:
            return None
        return f"subjects:{getattr(self.options, 'normalise', 'none')}"

    def params(self) -> dict[str, Any]:
        """The analysis parameters recorded (and hashed) in ``analysis_runs``."""
        opts = self.options
        if isinstance(opts, MeasureOptions):
            return {
                "test": opts.test,
                "space_a": self.space_a,
                "space_b": self.space_b,
                **opts.settings(),
                "permutations": opts.permutations,
                "seed": opts.seed,
                "n_concepts": self.n_concepts,
                "concepts_sha256": self.concepts_sha256,
                "analysis_version": analysis_version(opts.test),
            }
        params: dict[str, Any] = {
            "test": opts.test,
            "space_a": self.space_a,
            "space_b": self.space_b,
            "similarity": opts.similarity,
            "permutations": opts.permutations,
            "seed": opts.seed,
            "bootstrap": opts.bootstrap,
            "n_concepts": self.n_concepts,
            "concepts_sha256": self.concepts_sha256,
            "analysis_version": analysis_version(opts.test, self.target),
        }
        params["method" if opts.test == "rsa" else "distance"] = opts.metric
        if opts.tie_tol is not None:
            params["tie_tol"] = opts.tie_tol
        if self.target is not None:
            params["target"] = self.target
            params["n_subjects"] = len(self.subjects or ())
        return params

    @property
    def space_a_sha256(self) -> str | None:
        return self.input_hashes.get(self.space_a)

    @property
    def space_b_sha256(self) -> str | None:
        return self.input_hashes.get(self.space_b)


@dataclass(frozen=True)
class ResultRecord:
    """The numbers of one comparison, before storage.

    Attributes:
        spec: The comparison that produced them (vectors included).
        statistic: RSA rho, 2 vs 2 accuracy, or the measure (CKA, k-NN alignment, regression
            2 vs 2 accuracy).
        n_pairs: Number of concept pairs a 2 vs 2 test scored (None otherwise).
        p_value: Permutation p-value (None without permutations).
        null: The permutation null distribution (None without permutations).
        ci_low: Lower end of the bootstrap interval (None without bootstrap).
        ci_high: Upper end of the bootstrap interval.
        seconds: Wall time of the computation.
        device: Device the matrices were computed on.
    """

    spec: ComparisonSpec
    statistic: float
    n_pairs: int | None = None
    p_value: float | None = None
    null: np.ndarray | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def null_mean(self) -> float | None:
        return None if self.null is None or not len(self.null) else float(np.mean(self.null))

    @property
    def null_q95(self) -> float | None:
        if self.null is None or not len(self.null):
            return None
        return float(np.quantile(self.null, 0.95))
