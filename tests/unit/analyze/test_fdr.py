"""Benjamini-Hochberg against a by-hand case and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semwh.analyze import benjamini_hochberg
from semwh.errors import InputError


def test_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04, 0.5 scale to 0.04, 0.06, 0.0533, 0.5; running min from the
    # right gives 0.04, 0.0533, 0.0533, 0.5.
    out = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(out, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])


@pytest.mark.parametrize("m", [1, 2, 17, 500])
def test_matches_scipy(m: int) -> None:
    rng = np.random.default_rng(m)
    p = np.concatenate([rng.uniform(size=m - m // 3), rng.uniform(0, 0.01, size=m // 3)])
    p[: m // 5] = p[m // 5 : 2 * (m // 5)]  # ties
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p))


def test_rejects_bad_values() -> None:
    with pytest.raises(InputError, match="positions \\[1\\]"):
        benjamini_hochberg([0.1, 1.2])
    assert benjamini_hochberg([]).size == 0
