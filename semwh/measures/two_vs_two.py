"""The 2 vs 2 test: how often two concepts' similarity rows pair up correctly."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze import bootstrap_two_vs_two, two_vs_two
from semwh.analyze.difference import weighted_pairs
from semwh.analyze.two_vs_two import two_vs_two_null, two_vs_two_p_value
from semwh.measures.base import ComparisonSpec, WeightedStatistic
from semwh.measures.similarity import SimilarityMeasure, SimilarityOptions, tie_tol


class TwoVsTwo(SimilarityMeasure):
    name = "2v2"
    label = "2 vs 2 accuracy"
    summary = "share of concept pairs whose similarity rows match the right way round"
    chance = 0.5
    # History in semwh.analyze.versions.
    version = 3
    subject_version = 4
    metric_field = "distance"
    keeps_pairs = True

    def kernel_options(self, opts: SimilarityOptions) -> dict[str, Any]:
        return {"distance": opts.metric, "tie_tol": tie_tol(opts)}

    compute = staticmethod(two_vs_two)
    compute_null = staticmethod(two_vs_two_null)
    compute_bootstrap = staticmethod(bootstrap_two_vs_two)

    def unpack(self, result: Any) -> tuple[float, np.ndarray | None, int | None, Any]:
        return float(result.accuracy), result.null, int(result.n_pairs), result.pair_correct

    def p_value(self, statistic: float, null: np.ndarray) -> float:
        return float(two_vs_two_p_value(statistic, null))

    def one_weighted(
        self, spec: ComparisonSpec, opts: SimilarityOptions, sim_a: np.ndarray, sim_b: np.ndarray
    ) -> WeightedStatistic:
        pairs = self.compute(
            sim_a,
            sim_b,
            **self.kernel_options(opts),
            labels=list(spec.concept_ids),
            space_a=spec.space_a,
            space_b=spec.space_b,
            return_pairs=True,
        )
        assert pairs.pair_correct is not None
        return weighted_pairs(pairs.pair_correct)
