"""What a measure compares: two spaces over their shared concepts, with validated options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from semwh.analyze.design import CONCEPT_LEVEL, Design, group_codes
from semwh.measures.base import Options
from semwh.measures.registry import get


@dataclass(frozen=True)
class ComparisonSpec:
    """One comparison, ready to run.

    Attributes:
        space_a: Name of the first space (a layer, usually).
        space_b: Name of the second space (a word space, usually); permutations relabel it.
        concept_ids: The shared concepts K, sorted.
        a: Vectors of ``space_a`` over ``concept_ids`` (n x d_a, float64).
        b: Vectors of ``space_b`` over ``concept_ids`` (n x d_b, float64).
        options: Validated options of the measure (``options.test`` names it); ``seed`` is
            resolved when permutations or bootstrap need it.
        input_hashes: Content hashes of the two spaces, by name.
        concepts_sha256: Hash of ``concept_ids``.
        subjects: For a target with subjects (an RDM space), the subjects' ids; ``b`` is
            then the (subjects, n, n) stack of their similarity matrices over ``concept_ids``
            (minus each subject's dissimilarities, after the options' normalisation), and
            every statistic is computed per subject and averaged. None for a space of
            vectors.
        item_concepts: At the image level (items are stimuli: ``concept_ids`` are stimulus
            ids, sorted), each item's concept; None at the concept level.
        permute: How permutations relabel the items (:mod:`semwh.analyze.design`):
            ``concepts`` at the concept level; ``concepts``, ``images`` or
            ``within-concept`` at the image level.
        resample: What a bootstrap resamples: ``concepts`` or ``images``.
    """

    space_a: str
    space_b: str
    concept_ids: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    options: Any
    input_hashes: dict[str, str | None]
    concepts_sha256: str
    subjects: tuple[str, ...] | None = None
    item_concepts: tuple[str, ...] | None = None
    permute: str = CONCEPT_LEVEL
    resample: str = CONCEPT_LEVEL

    @property
    def level(self) -> str:
        """``concept``, or ``image`` when the items are stimuli."""
        return "concept" if self.item_concepts is None else "image"

    @property
    def n_concepts(self) -> int:
        """The number of items (rows of ``a`` and ``b``): concepts, or stimuli at the image
        level (what every kernel calls n)."""
        return len(self.concept_ids)

    @property
    def n_items(self) -> int:
        return len(self.concept_ids)

    @property
    def n_distinct_concepts(self) -> int:
        """How many concepts the items belong to (``results.n_concepts``)."""
        if self.item_concepts is None:
            return len(self.concept_ids)
        return len(set(self.item_concepts))

    @property
    def design(self) -> Design | None:
        """How permutations and resamples may relabel the items (None: items are free)."""
        if self.item_concepts is None:
            return None
        return Design(self.n_items, group_codes(self.item_concepts), self.permute, self.resample)

    @property
    def design_key(self) -> dict[str, Any]:
        """The level, scheme and bootstrap unit, as recorded with a result (part of its
        reuse key)."""
        return {"level": self.level, "permute": self.permute, "resample": self.resample}

    @property
    def measure(self) -> Any:
        """The registered measure of this spec (:func:`semwh.measures.get`)."""
        return get(self.options.test)

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

    @property
    def analysis_version(self) -> int:
        return int(self.measure.version_for(self.target))

    def params(self) -> dict[str, Any]:
        """The analysis parameters recorded (and hashed) in ``analysis_runs``."""
        opts: Options = self.options
        if self.measure.inputs == "features":
            return {
                "test": opts.test,
                "space_a": self.space_a,
                "space_b": self.space_b,
                "measure": opts.test,
                **opts.settings(),
                "permutations": opts.permutations,
                "seed": opts.seed,
                "n_concepts": self.n_concepts,
                "concepts_sha256": self.concepts_sha256,
                "analysis_version": self.analysis_version,
                **self._level_params(),
            }
        params: dict[str, Any] = {
            "test": opts.test,
            "space_a": self.space_a,
            "space_b": self.space_b,
            "permutations": opts.permutations,
            "seed": opts.seed,
            "bootstrap": opts.bootstrap,
            "n_concepts": self.n_concepts,
            "concepts_sha256": self.concepts_sha256,
            "analysis_version": self.analysis_version,
            **{k: v for k, v in opts.settings().items() if v is not None},
        }
        if self.target is not None:
            params["target"] = self.target
            params["n_subjects"] = len(self.subjects or ())
        params.update(self._level_params())
        return params

    def _level_params(self) -> dict[str, Any]:
        """The image level's design in the parameters (nothing at the concept level, so that
        concept-level parameters and their hashes stay as they were)."""
        if self.level == "concept":
            return {}
        return {**self.design_key, "n_items": self.n_items}

    @property
    def space_a_sha256(self) -> str | None:
        return self.input_hashes.get(self.space_a)

    @property
    def space_b_sha256(self) -> str | None:
        return self.input_hashes.get(self.space_b)
