"""What flows between the pure analysis step and storage: specs in, records out.

A :class:`ComparisonSpec` holds everything one comparison needs (the two spaces' vectors over
their shared concepts and the options with a resolved seed); :func:`semwh.runs.comparison.
run_comparison` turns it into a :class:`ResultRecord` without touching the warehouse, so any
mapper can fan the same function out and storage stays in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semwh.measures.spec import ComparisonSpec

__all__ = ["ComparisonSpec", "ResultRecord"]


@dataclass(frozen=True)
class ResultRecord:
    """The numbers of one comparison, before storage.

    Attributes:
        spec: The comparison that produced them (vectors included).
        statistic: RSA rho, 2 vs 2 accuracy, or the measure (CKA, k-NN alignment, regression
            2 vs 2 accuracy).
        n_pairs: Number of concept pairs a 2 vs 2 test scored (None otherwise).
        p_value: Permutation p-value (None without permutations).
        null: The permutation null distribution (None without permutations).
        ci_low: Lower end of the bootstrap interval (None without bootstrap).
        ci_high: Upper end of the bootstrap interval.
        seconds: Wall time of the computation.
        device: Device the matrices were computed on.
    """

    spec: ComparisonSpec
    statistic: float
    n_pairs: int | None = None
    p_value: float | None = None
    null: np.ndarray | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    seconds: float = 0.0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def null_mean(self) -> float | None:
        return None if self.null is None or not len(self.null) else float(np.mean(self.null))

    @property
    def null_q95(self) -> float | None:
        if self.null is None or not len(self.null):
            return None
        return float(np.quantile(self.null, 0.95))
