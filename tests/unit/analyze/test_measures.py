"""Linear CKA, mutual k-NN alignment and regression 2 vs 2 against slow references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semwh.analyze.cka import cka_null, linear_cka
from semwh.analyze.knn import SIMILARITY_STEP, knn_null, mutual_knn, similarity_keys
from semwh.analyze.permutation import permutation_blocks
from semwh.analyze.regression import regression_null, regression_two_vs_two
from semwh.errors import ConfigError, DegenerateInputError
from tests.unit.analyze import reference as ref


def pair(seed: int, n: int = 9, d_a: int = 5, d_b: int = 7, noise: float = 1.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_a))
    y = x @ rng.standard_normal((d_a, d_b)) + noise * rng.standard_normal((n, d_b))
    return x, y


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("seed", range(4))
def test_cka_equals_the_reference_on_random_inputs(estimator: str, seed: int) -> None:
    x, y = pair(seed, n=7 + seed, d_b=20)  # more features than concepts
    got = linear_cka(x, y, estimator=estimator).cka
    assert got == pytest.approx(ref.cka(x, y, estimator), abs=1e-9)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_cka_of_a_space_with_itself_is_one_and_rotation_and_scale_invariant(
    estimator: str,
) -> None:
    x, y = pair(11, n=12, d_a=6, d_b=6)
    assert linear_cka(x, x, estimator=estimator).cka == pytest.approx(1.0, abs=1e-12)
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((6, 6)))
    base = linear_cka(x, y, estimator=estimator).cka
    assert linear_cka(x @ q, 3.5 * y, estimator=estimator).cka == pytest.approx(base, abs=1e-12)
    assert linear_cka(0.01 * x, y @ q, estimator=estimator).cka == pytest.approx(base, abs=1e-12)


def test_biased_cka_is_inflated_when_features_outnumber_concepts() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((20, 500)), rng.standard_normal((20, 500))
    assert linear_cka(x, y, estimator="biased").cka > 0.8
    assert abs(linear_cka(x, y, estimator="unbiased").cka) < 0.1


def test_cka_null_is_the_reference_relabelling_and_blocks_concatenate() -> None:
    x, y = pair(2, n=8)
    result = linear_cka(x, y, n_permutations=12, seed=4)
    perms = ref.permutations(4, 8, 12)
    expected = [ref.cka(x, y[p]) for p in perms]
    np.testing.assert_allclose(result.null, expected, atol=1e-9, rtol=0)
    assert result.p_value == pytest.approx(ref.p_value(result.cka, expected))
    blocks = [
        cka_null(x, y, n_permutations=12, start=i, stop=j, seed=4)
        for i, j in permutation_blocks(12, 5)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks), result.null)


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("seed", range(3))
def test_mutual_knn_equals_a_literal_loop(k: int, seed: int) -> None:
    x, y = pair(seed, n=11, noise=2.0)
    assert mutual_knn(x, y, k=k).alignment == pytest.approx(ref.mutual_knn(x, y, k), abs=1e-12)


def test_mutual_knn_null_relabels_b_and_blocks_concatenate() -> None:
    x, y = pair(7, n=10, noise=0.5)
    result = mutual_knn(x, y, k=3, n_permutations=15, seed=9)
    expected = [ref.mutual_knn(x, y[p], 3) for p in ref.permutations(9, 10, 15)]
    np.testing.assert_allclose(result.null, expected, atol=1e-12, rtol=0)
    assert result.p_value == pytest.approx(ref.p_value(result.alignment, expected))
    blocks = [
        knn_null(x, y, k=3, n_permutations=15, start=i, stop=j, seed=9)
        for i, j in permutation_blocks(15, 4)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks), result.null)
    assert mutual_knn(x, x, k=3).alignment == 1.0


def tied(seed: int, n: int = 10, d: int = 3) -> np.ndarray:
    """Small integer vectors (many exactly equal cosines), some rows duplicated or scaled
    copies of others (exact ties that floating point splits by a unit in the last place)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    x[~x.any(axis=1), 0] = 1.0
    for src, dst in rng.choice(n, size=(n // 3, 2), replace=False):
        x[dst] = x[src] * rng.choice([1.0, 3.0, 0.7, 7.0])
    return x


def test_mutual_knn_decides_exact_ties_by_concept_order_on_a_worked_case() -> None:
    """Concepts 1 and 2 of A are parallel: 0 and 3 are exactly as near to 1 as to 2 (and 3
    to 0 as well), and the rule gives each to the first. k = 1, neighbours in A 0->1, 1->2,
    2->1, 3->0; in B 0->1, 1->2, 2->1, 3->2: three of four shared. Ranking the raw product
    instead puts 2 ahead of 1 for concept 0 (cos 1/sqrt(2) one unit lower) and gives 0.5."""
    a = np.array([[0, 0, 1], [0, 1, 1], [0, 3, 3], [1, 0, 0]], dtype=np.float64)
    b = np.array([[1, 0, 0], [1, 1, 0], [1, 2, 0], [0, 1, 0]], dtype=np.float64)
    assert mutual_knn(a, b, k=1).alignment == 0.75
    assert ref.mutual_knn(a, b, 1) == 0.75


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("seed", range(4))
def test_mutual_knn_and_its_null_equal_the_reference_with_ties(k: int, seed: int) -> None:
    """Duplicated rows and exact ties: the statistic and every null value equal the literal
    loop on the relabelled B, whose ties go to the first concept in the new order."""
    x, y = tied(seed), tied(100 + seed)
    result = mutual_knn(x, y, k=k, n_permutations=40, seed=seed)
    assert result.alignment == ref.mutual_knn(x, y, k)
    expected = [ref.mutual_knn(x, y[p], k) for p in ref.permutations(seed, 10, 40)]
    np.testing.assert_array_equal(result.null, expected)
    blocks = [
        knn_null(x, y, k=k, n_permutations=40, start=i, stop=j, seed=seed)
        for i, j in permutation_blocks(40, 7)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks), result.null)


def test_tie_keys_do_not_depend_on_the_last_bits_of_the_product() -> None:
    """Another BLAS rounds the product differently by a few units in the last place: the
    ranking keys, and so the neighbours, stay the same."""
    x = tied(3, n=12, d=4)
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = z @ z.T
    keys = similarity_keys(sim.copy())
    for direction in (np.inf, -np.inf):
        nudged = np.nextafter(np.nextafter(sim, direction), direction)
        np.testing.assert_array_equal(similarity_keys(nudged), keys)
    assert any(len(set(row)) < len(row) for row in keys.tolist())  # exact ties are there
    assert SIMILARITY_STEP == 2.0**-32


def test_mutual_knn_rejects_a_k_beyond_the_other_concepts() -> None:
    x, y = pair(1, n=6)
    with pytest.raises(ConfigError, match="k must be an integer from 1 to 5"):
        mutual_knn(x, y, k=6)


@pytest.mark.parametrize("distance", ["cosine", "pearson"])
@pytest.mark.parametrize("seed", range(3))
def test_regression_two_vs_two_equals_a_per_pair_refit(distance: str, seed: int) -> None:
    x, y = pair(seed, n=9, d_a=4, d_b=6, noise=2.0)
    grid = (1e-3, 0.1, 1.0, 10.0, 1e3)
    result = regression_two_vs_two(x, y, distance=distance, penalties=grid)
    correct, chosen = ref.regression_two_vs_two(x, y, list(grid), distance)
    np.testing.assert_array_equal(result.correct, correct)
    np.testing.assert_array_equal(result.chosen, chosen)
    assert result.accuracy == correct.sum() / 36
    # The grid is really searched: different pairs choose different penalties here.
    assert len(set(chosen[np.triu_indices(9, 1)])) > 1 or seed > 0


def test_regression_two_vs_two_null_relabels_b_and_blocks_concatenate() -> None:
    x, y = pair(4, n=7, d_a=3, d_b=5)
    grid = (0.1, 10.0)
    result = regression_two_vs_two(x, y, penalties=grid, n_permutations=5, seed=2)
    expected = [
        ref.regression_two_vs_two(x, y[p], list(grid))[0].sum() / 21
        for p in ref.permutations(2, 7, 5)
    ]
    np.testing.assert_array_equal(result.null, expected)
    blocks = [
        regression_null(x, y, penalties=grid, n_permutations=5, start=i, stop=j, seed=2)
        for i, j in permutation_blocks(5, 2)
    ]
    np.testing.assert_array_equal(np.concatenate(blocks), result.null)


def test_regression_two_vs_two_finds_a_linear_map_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 8))
    assert regression_two_vs_two(x, x @ rng.standard_normal((8, 10))).accuracy == 1.0
    noise = regression_two_vs_two(x, rng.standard_normal((30, 10))).accuracy
    assert 0.3 < noise < 0.7


def test_degenerate_inputs_name_their_concepts() -> None:
    x, y = pair(0, n=6)
    y[2] = 0.0
    with pytest.raises(DegenerateInputError, match="c2"):
        mutual_knn(x, y, k=2, labels=[f"c{i}" for i in range(6)])
    with pytest.raises(DegenerateInputError, match="c2"):
        regression_two_vs_two(x, y, labels=[f"c{i}" for i in range(6)])
    with pytest.raises(DegenerateInputError, match="no centred variance"):
        linear_cka(np.ones((6, 3)), y)
    x[1, 0] = np.nan
    with pytest.raises(DegenerateInputError, match="c1"):
        linear_cka(x, y, labels=[f"c{i}" for i in range(6)])


@pytest.mark.parametrize(
    "same", [np.tile([1.0, -2.0, 0.5], (6, 1)), np.ones((6, 3)), np.arange(1.0, 7.0)[:, None]]
)
def test_mutual_knn_refuses_a_space_whose_concepts_are_all_alike(same: np.ndarray) -> None:
    """Identical (or parallel) vectors leave every concept equally near: no neighbours."""
    labels = [f"c{i}" for i in range(6)]
    x, _ = pair(0, n=6)
    for a, b, space in ((same, x, "A"), (x, same, "B")):
        with pytest.raises(DegenerateInputError, match=rf"space '{space}'.*c0, c1"):
            mutual_knn(a, b, k=2, labels=labels)


def test_measure_p_values_are_uniform_without_a_relation() -> None:
    """Relabelling B is exact under independence: p is uniform (KS over seeded draws)."""
    ps = []
    for seed in range(150):
        rng = np.random.default_rng(1000 + seed)
        x, y = rng.standard_normal((10, 4)), rng.standard_normal((10, 4))
        ps.append(linear_cka(x, y, n_permutations=39, seed=seed).p_value)
    # p takes the values k/40; compare with the uniform on them (randomised within a step).
    jitter = np.random.default_rng(0).uniform(0, 1 / 40, len(ps))
    assert stats.kstest(np.asarray(ps) - jitter, "uniform").pvalue > 0.01
