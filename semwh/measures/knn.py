"""Mutual k-NN alignment: the mean overlap of each concept's k nearest neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze.difference import KNN_DIFFERENCE_REFUSED
from semwh.analyze.knn import knn_null, mutual_knn
from semwh.errors import ConfigError
from semwh.measures.base import Allocate, ComparisonSpec, WeightedStatistic
from semwh.measures.cka import _numbers
from semwh.measures.vectors import VectorMeasure


class MutualKNN(VectorMeasure):
    name = "knn"
    label = "mutual k-NN alignment"
    summary = "mean share of each concept's k nearest neighbours the two spaces agree on"
    chance = None
    version = 2

    def statistic(self, spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
        found = mutual_knn(spec.a, spec.b, **self.common(spec))
        return _numbers(spec, found.alignment, found.p_value, found.null)

    def value(self, spec: ComparisonSpec) -> float:
        common = {**self.common(spec), "n_permutations": 0}
        return float(mutual_knn(spec.a, spec.b, **common).alignment)

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        return np.asarray(
            knn_null(spec.a, spec.b, start=start, stop=stop, **self.common(spec)),
            dtype=np.float64,
        )

    def difference_refusal(self) -> str | None:
        return KNN_DIFFERENCE_REFUSED

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        raise ConfigError(f"{KNN_DIFFERENCE_REFUSED}; compare rsa, 2v2, cka or reg2v2 results")
