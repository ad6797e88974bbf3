"""Similarity matrices against a by-hand case and a scipy loop."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import similarity_matrix
from semwh.errors import ConfigError, DegenerateInputError
from tests.unit.analyze import reference


def test_pearson_by_hand() -> None:
    x = np.array([[1, 2, 3], [3, 2, 1], [2, 4, 6], [1, 3, 2]], dtype=float)
    s = similarity_matrix(x)
    # Centred: [-1,0,1], [1,0,-1], [-2,0,2], [-1,1,0]; r(x0,x3) = 1 / (sqrt2 * sqrt2) = 0.5.
    assert s[0, 1] == pytest.approx(-1.0)
    assert s[0, 2] == pytest.approx(1.0)
    assert s[0, 3] == pytest.approx(0.5)
    assert s[1, 3] == pytest.approx(-0.5)
    assert np.array_equal(s, s.T)
    assert np.all(np.diag(s) == 1.0)


@pytest.mark.parametrize("metric", ["pearson", "spearman", "cosine"])
@pytest.mark.parametrize("n,d", [(4, 3), (9, 7), (25, 40)])
def test_matches_scipy_loop(metric: str, n: int, d: int) -> None:
    rng = np.random.default_rng(n * 100 + d)
    x = rng.standard_normal((n, d))
    if metric == "spearman":
        x = np.round(x, 1)  # ties inside rows
    expected = reference.similarity(x, metric)
    np.testing.assert_allclose(similarity_matrix(x, metric=metric), expected, atol=1e-12)


def test_constant_row_named() -> None:
    x = np.random.default_rng(0).standard_normal((5, 4))
    x[2] = 3.0
    with pytest.raises(DegenerateInputError, match=r"n02\b.*constant|constant.*n02"):
        similarity_matrix(x, labels=["n00", "n01", "n02", "n03", "n04"], space="layer")


def test_near_constant_row_named() -> None:
    x = np.random.default_rng(0).standard_normal((5, 4))
    x[4] = 1.0 + 1e-14 * np.arange(4)
    with pytest.raises(DegenerateInputError, match="n04"):
        similarity_matrix(x, labels=["n00", "n01", "n02", "n03", "n04"])


def test_nan_and_inf_named() -> None:
    x = np.random.default_rng(0).standard_normal((6, 4))
    x[1, 0] = np.nan
    x[5, 3] = np.inf
    with pytest.raises(DegenerateInputError, match=r"'glove'.*n01, n05"):
        similarity_matrix(x, labels=[f"n0{i}" for i in range(6)], space="glove")


def test_too_few_concepts() -> None:
    with pytest.raises(DegenerateInputError, match="3 concepts, at least 4"):
        similarity_matrix(np.random.default_rng(0).standard_normal((3, 5)), space="s")


def test_cosine_zero_row_named() -> None:
    x = np.random.default_rng(0).standard_normal((4, 4))
    x[0] = 0.0
    with pytest.raises(DegenerateInputError, match="all-zero.*: n0;"):
        similarity_matrix(x, metric="cosine", labels=["n0", "n1", "n2", "n3"])


def test_unknown_metric() -> None:
    with pytest.raises(ConfigError, match="pearsn.*choose pearson"):
        similarity_matrix(np.eye(4) + 1, metric="pearsn")


@pytest.mark.parametrize("metric", ["pearson", "spearman", "cosine"])
def test_input_independent_space_is_degenerate(metric: str) -> None:
    # Logits of a randomly initialised network: one pattern for every concept, plus noise at
    # the level of float32 rounding. Every similarity would be 1; the space must be refused.
    rng = np.random.default_rng(3)
    pattern = rng.normal(size=50)
    x = pattern + rng.normal(scale=1e-12, size=(6, 50))
    labels = [f"n0{i}" for i in range(6)]
    with pytest.raises(DegenerateInputError, match="nearly identical.*n00, n01"):
        similarity_matrix(x, metric=metric, labels=labels, space="random/fc")


def test_similar_but_distinct_concepts_are_accepted() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=50) + rng.normal(scale=1e-3, size=(6, 50))
    s = similarity_matrix(x, labels=[f"c{i}" for i in range(6)], space="deep")
    assert (s[np.triu_indices(6, 1)] < 1.0).all()
