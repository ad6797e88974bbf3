"""Linear CKA between two spaces' feature vectors (unbiased HSIC estimator by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze.cka import cka_null, linear_cka
from semwh.analyze.difference import weighted_cka
from semwh.measures.base import Allocate, ComparisonSpec, WeightedStatistic
from semwh.measures.vectors import VectorMeasure


class CKA(VectorMeasure):
    name = "cka"
    label = "linear CKA"
    summary = "linear centred kernel alignment of the two spaces' vectors"
    chance = 0.0
    version = 1

    def statistic(self, spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
        found = linear_cka(spec.a, spec.b, **self.common(spec))
        return _numbers(spec, found.cka, found.p_value, found.null)

    def value(self, spec: ComparisonSpec) -> float:
        return float(linear_cka(spec.a, spec.b, **{**self.common(spec), "n_permutations": 0}).cka)

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        return np.asarray(
            cka_null(spec.a, spec.b, start=start, stop=stop, **self.common(spec)),
            dtype=np.float64,
        )

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        estimator = spec.options.settings()["estimator"]
        return weighted_cka(spec.a, spec.b, estimator)


def _numbers(spec: ComparisonSpec, statistic: float, p_value: Any, null: Any) -> dict[str, Any]:
    """A vector measure's numbers: statistic, and p-value and null with permutations."""
    numbers: dict[str, Any] = {"statistic": float(statistic), "device": "cpu"}
    if spec.options.permutations > 0:
        numbers["p_value"] = float(p_value) if p_value is not None else None
        numbers["null"] = np.asarray(null, dtype=np.float64)
    return numbers
