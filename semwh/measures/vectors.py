"""What the measures of feature vectors built into semwh share (CKA, k-NN, regression 2 vs 2):
one options class, whose fields that do not apply to a measure stay None."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from semwh.analyze.cka import CKA_ESTIMATORS
from semwh.analyze.knn import DEFAULT_K
from semwh.analyze.regression import DEFAULT_PENALTIES, REGRESSION_DISTANCES, REGRESSION_TIE_TOL
from semwh.errors import ConfigError
from semwh.measures.base import (
    FEATURES,
    Measure,
    Options,
    check_choice,
    check_device,
    check_seed,
)
from semwh.validate import check_count


@dataclass(frozen=True)
class VectorOptions(Options):
    """Options of a built-in measure of feature vectors.

    Attributes:
        estimator: CKA estimator, ``unbiased`` or ``biased`` (CKA only).
        k: Neighbours per concept (mutual k-NN only).
        distance: Row distance of regression 2 vs 2, ``cosine`` or ``pearson``.
        penalties: Ridge penalty grid of regression 2 vs 2, in multiples of tr(Xc Xc')/n.
        tie_tol: Regression 2 vs 2 tie tolerance.
    """

    estimator: str | None = None
    k: int | None = None
    distance: str | None = None
    penalties: tuple[float, ...] | None = None
    tie_tol: float | None = None

    @classmethod
    def make(
        cls,
        test: str,
        *,
        estimator: str = "unbiased",
        k: int = DEFAULT_K,
        distance: str = "cosine",
        penalties: Sequence[float] = DEFAULT_PENALTIES,
        tie_tol: float = REGRESSION_TIE_TOL,
        permutations: int = 0,
        seed: int | None = None,
        device: str = "cpu",
    ) -> VectorOptions:
        """Validated options; the options that do not apply to ``test`` are dropped."""
        check_choice(test, ("cka", "knn", "reg2v2"), "measure")
        seed = check_seed(seed)
        fields: dict[str, object] = {}
        if test == "cka":
            fields["estimator"] = check_choice(estimator, CKA_ESTIMATORS, "CKA estimator")
        elif test == "knn":
            if (
                isinstance(k, bool)
                or not isinstance(k, int | float)
                or not math.isfinite(k)
                or int(k) != k
                or k < 1
            ):
                raise ConfigError(f"k must be an integer of 1 or more, got {k!r}")
            fields["k"] = int(k)
        else:
            fields["distance"] = check_choice(
                distance, REGRESSION_DISTANCES, "regression 2 vs 2 distance"
            )
            try:
                grid = tuple(float(p) for p in penalties)
            except (TypeError, ValueError):
                grid = ()
            if not grid or not all(math.isfinite(p) and p > 0 for p in grid):
                raise ConfigError(
                    f"ridge penalties must be positive numbers, got {list(penalties)!r}"
                )
            fields["penalties"] = grid
            if not (
                isinstance(tie_tol, int | float)
                and not isinstance(tie_tol, bool)
                and 0 <= float(tie_tol) < 1
            ):
                raise ConfigError(f"tie tolerance must be in [0, 1), got {tie_tol!r}")
            fields["tie_tol"] = float(tie_tol)
        return cls(
            test=test,
            permutations=check_count(permutations, "permutations"),
            seed=seed,
            device=check_device(device),
            **fields,  # type: ignore[arg-type]
        )

    @property
    def variant(self) -> str:
        """The readable label stored with a result: estimator, ``k=K`` or distance."""
        if self.test == "cka":
            return str(self.estimator)
        if self.test == "knn":
            return f"k={self.k}"
        return str(self.distance)

    @property
    def metric(self) -> str:
        return self.variant

    def settings(self) -> dict[str, Any]:
        """The measure's own options (hashed into the reuse key)."""
        if self.test == "cka":
            return {"estimator": self.estimator}
        if self.test == "knn":
            return {"k": self.k}
        return {
            "distance": self.distance,
            "penalties": list(self.penalties or ()),
            "tie_tol": self.tie_tol,
        }


class VectorMeasure(Measure):
    """A built-in measure of feature vectors; its options are :class:`VectorOptions`."""

    inputs: ClassVar[str] = FEATURES
    options_type: ClassVar[type[Options]] = VectorOptions

    def defaults(self) -> dict[str, Any]:
        return VectorOptions.make(self.name).settings()

    def settings_map(self) -> dict[str, str]:
        if self.sweep_settings is not None:
            return dict(self.sweep_settings)
        return {name: name for name in self.defaults()}

    def build(self, common: dict[str, Any], own: dict[str, Any]) -> Options:
        del common["bootstrap"]
        return VectorOptions.make(self.name, **common, **self.read_text(own))

    def common(self, spec: Any) -> dict[str, Any]:
        """The arguments every statistic of :mod:`semwh.analyze` takes for ``spec``."""
        opts = spec.options
        return dict(
            labels=list(spec.concept_ids),
            space_a=spec.space_a,
            space_b=spec.space_b,
            seed=opts.seed if opts.seed is not None else 0,
            n_permutations=opts.permutations,
            **opts.settings(),
        )
