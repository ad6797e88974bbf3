"""RSA: the correlation of the upper triangles of two concept similarity matrices."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze import bootstrap_rsa, rsa
from semwh.analyze.difference import weighted_rsa
from semwh.analyze.rsa import rsa_null, rsa_p_value
from semwh.measures.base import ComparisonSpec, WeightedStatistic
from semwh.measures.similarity import SimilarityMeasure, SimilarityOptions


class RSA(SimilarityMeasure):
    name = "rsa"
    label = "RSA"
    summary = "Spearman (or Pearson, Kendall tau-a) correlation of the similarity triangles"
    chance = 0.0
    # History in semwh.analyze.versions.
    version = 2
    subject_version = 3
    metric_field = "method"

    def kernel_options(self, opts: SimilarityOptions) -> dict[str, Any]:
        return {"method": opts.metric}

    compute = staticmethod(rsa)
    compute_null = staticmethod(rsa_null)
    compute_bootstrap = staticmethod(bootstrap_rsa)

    def unpack(self, result: Any) -> tuple[float, np.ndarray | None, int | None, Any]:
        return float(result.rho), result.null, None, None

    def p_value(self, statistic: float, null: np.ndarray) -> float:
        return float(rsa_p_value(statistic, null))

    def one_weighted(
        self, spec: ComparisonSpec, opts: SimilarityOptions, sim_a: np.ndarray, sim_b: np.ndarray
    ) -> WeightedStatistic:
        return weighted_rsa(sim_a, sim_b, opts.metric)
