"""Orthogonal Procrustes similarity as a semwh measure: a complete plugin in one file.

Install it in a package whose metadata declares the entry point (see docs/extending.md)::

    [project.entry-points."semwh.measures"]
    procrustes = "semwh_procrustes:Procrustes"

and every path of semwh runs it: ``semwh analyze compare --measure procrustes``, sweeps,
grids, peaks, paired differences, ``semwh verify``, the ``measure_curves`` query and the
report.

The statistic: centre the rows of both spaces (optional), scale each to unit Frobenius norm,
and take the nuclear norm of ``X' Y`` (the sum of its singular values). It is the largest
``trace(R' X' Y)`` over orthogonal maps ``R`` from B's space into A's (zero-padded when the
widths differ): 1 when B is a rotation or reflection of A up to scale, near 0 for unrelated
spaces. ``arccos`` of it is the angular Procrustes shape distance (Williams et al., 2021).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semwh.errors import DegenerateInputError
from semwh.measures import FEATURES, Measure, Options


@dataclass(frozen=True)
class ProcrustesOptions(Options):
    """Options of the Procrustes similarity.

    Attributes:
        centre: Subtract each space's mean vector before scaling (default); without it the
            statistic also rewards a shared offset.
    """

    centre: bool = True


def procrustes_similarity(
    x: np.ndarray, y: np.ndarray, centre: bool = True, weights: np.ndarray | None = None
) -> float:
    """The nuclear norm of ``X' Y`` after centring and unit Frobenius scaling.

    ``weights`` (one count per row) give the statistic of the multiset in which row i
    appears ``weights[i]`` times: what a paired difference resamples.

    Raises:
        DegenerateInputError: A space whose (centred) rows are all zero.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    scaled = []
    for name, m in (("A", x), ("B", y)):
        if centre:
            m = m - (w @ m) / w.sum()
        m = np.sqrt(w)[:, None] * m
        norm = np.linalg.norm(m)
        if not np.isfinite(norm) or norm == 0:
            raise DegenerateInputError(f"space {name} is constant over the concepts")
        scaled.append(m / norm)
    return float(np.linalg.svd(scaled[0].T @ scaled[1], compute_uv=False).sum())


class Procrustes(Measure):
    """Orthogonal Procrustes similarity of two spaces' vectors."""

    name = "procrustes"
    label = "Procrustes similarity"
    summary = "nuclear norm of X'Y after centring and unit scaling (1: B is a rotation of A)"
    options_type = ProcrustesOptions
    inputs = FEATURES
    chance = None
    version = 1

    def value(self, spec) -> float:  # type: ignore[no-untyped-def]
        return procrustes_similarity(spec.a, spec.b, spec.options.centre)

    def weighted(self, spec):  # type: ignore[no-untyped-def]
        a, b, centre = spec.a, spec.b, spec.options.centre
        return lambda w: procrustes_similarity(a, b, centre, w)
