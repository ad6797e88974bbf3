"""Option values of the analyses, checked before any data is loaded.

Each measure's options live with the measure (:mod:`semwh.measures`); this module keeps the
names the rest of semwh and saved scripts import.
"""

from __future__ import annotations

from semwh import validate
from semwh.analyze import SIMILARITY_METRICS
from semwh.measures import options_for
from semwh.measures.base import (
    AUTO_DEVICE,
    DEVICES,
    MAX_SEED,
    Options,
    check_choice,
    check_device,
    check_seed,
    resolve_auto_device,
)
from semwh.measures.similarity import SimilarityOptions
from semwh.measures.vectors import VectorOptions

#: The options of RSA and 2 vs 2 (measures of similarity matrices).
ComparisonOptions = SimilarityOptions
#: The options of the built-in measures of feature vectors (cka, knn, reg2v2).
MeasureOptions = VectorOptions

#: The built-in measures of similarity matrices; every registered measure:
#: :func:`semwh.measures.names`.
TESTS = ("rsa", "2v2")
#: The built-in measures of feature vectors.
MEASURES = ("cka", "knn", "reg2v2")
#: The built-in measures a sweep can run.
SWEEP_TESTS = (*TESTS, *MEASURES)
SIMILARITIES = SIMILARITY_METRICS

__all__ = [
    "AUTO_DEVICE",
    "DEVICES",
    "MAX_SEED",
    "MEASURES",
    "SIMILARITIES",
    "SWEEP_TESTS",
    "TESTS",
    "ComparisonOptions",
    "MeasureOptions",
    "Options",
    "check_choice",
    "check_count",
    "check_device",
    "check_seed",
    "options_for",
    "resolve_auto_device",
]


def check_count(value: int, what: str) -> int:
    """A count of 0 or more (:func:`semwh.validate.check_count`)."""
    return validate.check_count(value, what)
