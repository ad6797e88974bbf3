"""RSA: the correlation of the upper triangles of two concept similarity matrices."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze import bootstrap_rsa, rsa
from semwh.analyze.difference import weighted_rsa
from semwh.analyze.rsa import rsa_null, rsa_p_value
from semwh.measures.base import ComparisonSpec, WeightedStatistic
from semwh.measures.similarity import SimilarityMeasure, SimilarityOptions, backend


class RSA(SimilarityMeasure):
    name = "rsa"
    label = "RSA"
    summary = "Spearman (or Pearson, Kendall tau-a) correlation of the similarity triangles"
    chance = 0.0
    # History in semwh.analyze.versions.
    version = 2
    subject_version = 3
    metric_field = "method"

    def one(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        keep_pairs: bool,
    ) -> tuple[float, np.ndarray | None, int | None, np.ndarray | None]:
        result = rsa(
            sim_a, sim_b, method=opts.metric, backend=backend(opts), device=opts.device, **common
        )
        return float(result.rho), result.null, None, None

    def one_null(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        start: int,
        stop: int,
    ) -> np.ndarray:
        return rsa_null(
            sim_a,
            sim_b,
            method=opts.metric,
            start=start,
            stop=stop,
            backend=backend(opts),
            device=opts.device,
            **common,
        )

    def p_value(self, statistic: float, null: np.ndarray) -> float:
        return float(rsa_p_value(statistic, null))

    def one_bootstrap(
        self, sim_a: np.ndarray, sim_b: np.ndarray, opts: SimilarityOptions, boot: dict[str, Any]
    ) -> Any:
        return bootstrap_rsa(sim_a, sim_b, method=opts.metric, **boot)

    def one_weighted(
        self, spec: ComparisonSpec, opts: SimilarityOptions, sim_a: np.ndarray, sim_b: np.ndarray
    ) -> WeightedStatistic:
        return weighted_rsa(sim_a, sim_b, opts.metric)
