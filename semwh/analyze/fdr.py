"""Benjamini-Hochberg false discovery rate across the tests of one sweep."""

from __future__ import annotations

import numpy as np

from semwh.errors import InputError


def benjamini_hochberg(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same as ``scipy.stats.false_discovery_control``).

    p_fdr[(k)] = min over j >= k of p[(j)] * m / j, capped at 1, returned in input order.

    Args:
        p_values: 1-D p-values in [0, 1].

    Returns:
        float64 array of adjusted p-values, same shape and order.

    Raises:
        InputError: not 1-D, NaN, or outside [0, 1].
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InputError(f"p-values must be a 1-D sequence, got shape {p.shape}")
    if p.size == 0:
        return p.copy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        bad = np.flatnonzero(np.isnan(p) | (p < 0) | (p > 1))
        raise InputError(
            f"p-values must lie in [0, 1]; positions {bad[:10].tolist()} do not: check the tests "
            "that produced them"
        )
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
