"""The 2 vs 2 test: how often two concepts' similarity rows pair up correctly."""

from __future__ import annotations

from typing import Any

import numpy as np

from semwh.analyze import bootstrap_two_vs_two, two_vs_two
from semwh.analyze.difference import weighted_pairs
from semwh.analyze.two_vs_two import two_vs_two_null, two_vs_two_p_value
from semwh.measures.base import ComparisonSpec, WeightedStatistic
from semwh.measures.similarity import SimilarityMeasure, SimilarityOptions, backend, tie_tol


class TwoVsTwo(SimilarityMeasure):
    name = "2v2"
    label = "2 vs 2 accuracy"
    summary = "share of concept pairs whose similarity rows match the right way round"
    chance = 0.5
    # History in semwh.analyze.versions.
    version = 3
    subject_version = 4
    metric_field = "distance"

    def one(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        keep_pairs: bool,
    ) -> tuple[float, np.ndarray | None, int | None, np.ndarray | None]:
        pairs = two_vs_two(
            sim_a,
            sim_b,
            distance=opts.metric,
            tie_tol=tie_tol(opts),
            backend=backend(opts),
            device=opts.device,
            return_pairs=keep_pairs,
            **common,
        )
        return float(pairs.accuracy), pairs.null, int(pairs.n_pairs), pairs.pair_correct

    def one_null(
        self,
        sim_a: np.ndarray,
        sim_b: np.ndarray,
        opts: SimilarityOptions,
        common: dict[str, Any],
        start: int,
        stop: int,
    ) -> np.ndarray:
        return two_vs_two_null(
            sim_a,
            sim_b,
            distance=opts.metric,
            tie_tol=tie_tol(opts),
            start=start,
            stop=stop,
            backend=backend(opts),
            device=opts.device,
            **common,
        )

    def p_value(self, statistic: float, null: np.ndarray) -> float:
        return float(two_vs_two_p_value(statistic, null))

    def one_bootstrap(
        self, sim_a: np.ndarray, sim_b: np.ndarray, opts: SimilarityOptions, boot: dict[str, Any]
    ) -> Any:
        return bootstrap_two_vs_two(
            sim_a, sim_b, distance=opts.metric, tie_tol=tie_tol(opts), **boot
        )

    def one_weighted(
        self, spec: ComparisonSpec, opts: SimilarityOptions, sim_a: np.ndarray, sim_b: np.ndarray
    ) -> WeightedStatistic:
        pairs = two_vs_two(
            sim_a,
            sim_b,
            distance=opts.metric,
            tie_tol=float(opts.tie_tol or 0.0),
            labels=list(spec.wnids),
            space_a=spec.space_a,
            space_b=spec.space_b,
            return_pairs=True,
        )
        assert pairs.pair_correct is not None
        return weighted_pairs(pairs.pair_correct)
