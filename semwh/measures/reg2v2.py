"""Regression 2 vs 2: ridge-predict space B from space A with held-out pairs of concepts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from semwh.analyze.difference import weighted_pairs
from semwh.analyze.regression import regression_null, regression_two_vs_two
from semwh.measures.base import Allocate, ComparisonSpec, WeightedStatistic
from semwh.measures.cka import _numbers
from semwh.measures.vectors import VectorMeasure


class RegressionTwoVsTwo(VectorMeasure):
    name = "reg2v2"
    label = "regression 2 vs 2 accuracy"
    summary = "leave-two-out ridge prediction of B from A, scored by the 2 vs 2 rule"
    chance = 0.5
    version = 1
    # A sweep's --regression-distance is this measure's distance (--distance is 2 vs 2's).
    sweep_settings: ClassVar[Mapping[str, str] | None] = {
        "regression_distance": "distance",
        "penalties": "penalties",
    }

    def statistic(self, spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
        found = regression_two_vs_two(spec.a, spec.b, **self.common(spec))
        numbers = _numbers(spec, found.accuracy, found.p_value, found.null)
        numbers["n_pairs"] = found.n_pairs
        return numbers

    def value(self, spec: ComparisonSpec) -> float:
        common = {**self.common(spec), "n_permutations": 0}
        return float(regression_two_vs_two(spec.a, spec.b, **common).accuracy)

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        return np.asarray(
            regression_null(spec.a, spec.b, start=start, stop=stop, **self.common(spec)),
            dtype=np.float64,
        )

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        common = {**self.common(spec), "n_permutations": 0}
        return weighted_pairs(regression_two_vs_two(spec.a, spec.b, **common).correct)
