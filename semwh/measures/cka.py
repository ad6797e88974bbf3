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
        found = linear_cka(
            spec.a, spec.b, **self.common(spec), backend=_backend(spec), device=spec.options.device
        )
        numbers = _numbers(spec, found.cka, found.p_value, found.null)
        # The statistic is computed on the CPU; the device runs the permutation null.
        numbers["device"] = spec.options.device
        return numbers

    def value(self, spec: ComparisonSpec) -> float:
        return float(linear_cka(spec.a, spec.b, **{**self.common(spec), "n_permutations": 0}).cka)

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        return np.asarray(
            cka_null(
                spec.a,
                spec.b,
                start=start,
                stop=stop,
                **self.common(spec),
                backend=_backend(spec),
                device=spec.options.device,
            ),
            dtype=np.float64,
        )

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        estimator = spec.options.settings()["estimator"]
        return weighted_cka(spec.a, spec.b, estimator)


def _backend(spec: ComparisonSpec) -> str:
    """The null's backend: torch (float64 on the device) off the CPU, else the CPU kernels."""
    return "torch" if spec.options.device != "cpu" else "numpy"


def _numbers(spec: ComparisonSpec, statistic: float, p_value: Any, null: Any) -> dict[str, Any]:
    """A vector measure's numbers: statistic, and p-value and null with permutations."""
    numbers: dict[str, Any] = {"statistic": float(statistic), "device": "cpu"}
    if spec.options.permutations > 0:
        numbers["p_value"] = float(p_value) if p_value is not None else None
        numbers["null"] = np.asarray(null, dtype=np.float64)
    return numbers
