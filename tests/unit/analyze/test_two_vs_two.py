"""2 vs 2 fast path against the pair-by-pair loop, including exact ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semwh.analyze import similarity_matrix, two_vs_two
from semwh.analyze.two_vs_two_fast_null import _low_rank
from semwh.errors import ConfigError, DegenerateInputError
from tests.unit.analyze import reference


def random_pair(n: int, seed: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return similarity_matrix(x), similarity_matrix(x + 1.5 * rng.standard_normal((n, d)))


def duplicate_concept(s: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Make concept dst an exact copy of concept src (rows and columns)."""
    s = s.copy()
    s[dst, :] = s[src, :]
    s[:, dst] = s[:, src]
    s[dst, dst] = s[src, src]
    return s


def test_identical_spaces_by_hand() -> None:
    a = np.array(
        [
            [1.0, 0.2, 0.9, -0.3],
            [0.2, 1.0, -0.4, 0.8],
            [0.9, -0.4, 1.0, 0.1],
            [-0.3, 0.8, 0.1, 1.0],
        ]
    )
    # Every kept pair of entries differs in order between the two rows, so d(a_i, a_j) = 2
    # while d(a_i, a_i) = 0: every pair is correct.
    assert two_vs_two(a, a).accuracy == 1.0
    # Swapping concepts 0 and 1 in B makes b_0 = a_1, b_1 = a_0 on the kept entries {2, 3}:
    # lhs = 2 d(a_0, a_1) = 4 > rhs = 0, so pair (0, 1) is wrong.
    swapped = a[[1, 0, 2, 3]][:, [1, 0, 2, 3]]
    result = two_vs_two(a, swapped, return_pairs=True)
    assert not result.pair_correct[0, 1]
    assert result.pair_margin[0, 1] == pytest.approx(-4.0)


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize("n", [4, 5, 11, 40])
def test_matches_loop(distance: str, n: int) -> None:
    a, b = random_pair(n, seed=n)
    correct, margin = reference.two_vs_two_pairs(a, b, distance)
    result = two_vs_two(a, b, distance=distance, return_pairs=True)
    np.testing.assert_array_equal(result.pair_correct, correct)
    np.testing.assert_allclose(result.pair_margin, margin, atol=1e-9, equal_nan=True)
    assert result.n_correct == correct.sum()
    assert result.accuracy == correct.sum() / (n * (n - 1) / 2)
    assert two_vs_two(a, b, distance=distance).n_correct == result.n_correct


def test_strict_comparison_without_tolerance_on_continuous_inputs() -> None:
    a, b = random_pair(23, seed=4)
    correct, _ = reference.two_vs_two_pairs(a, b, tie_tol=0.0)
    assert two_vs_two(a, b, tie_tol=0.0).n_correct == correct.sum()


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
def test_ties_decided_like_the_loop(distance: str) -> None:
    """Duplicated concepts and coarse values create exact ties: they count as not correct."""
    a, b = random_pair(14, seed=9)
    b = duplicate_concept(b, 2, 5)
    a = duplicate_concept(a, 7, 8)
    coarse_a, coarse_b = np.round(a, 1), np.round(b, 1)
    for sa, sb in ((a, b), (coarse_a, coarse_b), (a, a), (b, b)):
        correct, margin = reference.two_vs_two_pairs(sa, sb, distance)
        result = two_vs_two(sa, sb, distance=distance, return_pairs=True)
        np.testing.assert_array_equal(result.pair_correct, correct)
        np.testing.assert_allclose(result.pair_margin, margin, atol=1e-9, equal_nan=True)
    # The duplicated pairs themselves are exact ties.
    result = two_vs_two(a, b, distance=distance, return_pairs=True)
    assert not result.pair_correct[2, 5] and not result.pair_correct[7, 8]
    assert abs(result.pair_margin[2, 5]) < 1e-12


def test_blocks_do_not_change_results() -> None:
    a, b = random_pair(70, seed=1)
    whole = two_vs_two(a, b, return_pairs=True)
    tiny = two_vs_two(a, b, return_pairs=True, max_block_bytes=30 * 8 * 70 * 3)
    np.testing.assert_array_equal(whole.pair_correct, tiny.pair_correct)
    assert whole.n_correct == two_vs_two(a, b, max_block_bytes=1).n_correct


def test_torch_backend_same_results() -> None:
    a, b = random_pair(30, seed=2)
    numpy_result = two_vs_two(a, b, n_permutations=5, seed=3, return_pairs=True)
    torch_result = two_vs_two(a, b, n_permutations=5, seed=3, return_pairs=True, backend="torch")
    np.testing.assert_array_equal(numpy_result.pair_correct, torch_result.pair_correct)
    np.testing.assert_array_equal(numpy_result.null, torch_result.null)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backend_same_results() -> None:
    a, b = random_pair(60, seed=2)
    cpu = two_vs_two(a, b, n_permutations=5, seed=3)
    gpu = two_vs_two(a, b, n_permutations=5, seed=3, backend="torch", device="cuda")
    assert cpu.n_correct == gpu.n_correct
    np.testing.assert_array_equal(cpu.null, gpu.null)


def test_null_matches_relabelling_loop() -> None:
    n, count, seed = 8, 12, 5
    a, b = random_pair(n, seed=6)
    result = two_vs_two(a, b, n_permutations=count, seed=seed)
    expected = [
        reference.two_vs_two_pairs(a, reference.relabel(b, p))[0].sum() / (n * (n - 1) / 2)
        for p in reference.permutations(seed, n, count)
    ]
    np.testing.assert_array_equal(result.null, expected)
    assert result.p_value == (1 + sum(x >= result.accuracy for x in expected)) / (1 + count)
    assert result.seed == seed and result.n_permutations == count


def test_options_and_degenerate_inputs() -> None:
    a, b = random_pair(6, seed=1)
    with pytest.raises(ConfigError, match="choose pearson, cosine"):
        two_vs_two(a, b, distance="euclid")
    with pytest.raises(ConfigError, match="CUDA is not available|numpy backend"):
        two_vs_two(a, b, device="cuda")
    a[4, 4] = np.inf
    with pytest.raises(DegenerateInputError, match="'layer'.*c4"):
        two_vs_two(a, b, labels=[f"c{i}" for i in range(6)], space_a="layer")
    with pytest.raises(DegenerateInputError, match="3 shared concepts"):
        two_vs_two(np.eye(3), np.eye(3))


def rounded_pair(n: int, seed: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Coarse similarities of d-dimensional vectors: many exact ties, rank about d."""
    a, b = random_pair(n, seed, d)
    a, b = np.round(a, 1), np.round(b, 1)
    np.fill_diagonal(a, 1.0)
    np.fill_diagonal(b, 1.0)
    return a, duplicate_concept(b, 3, 9)


def loop_null(a: np.ndarray, b: np.ndarray, seed: int, count: int, distance: str) -> list[int]:
    n = len(a)
    return [
        int(reference.two_vs_two_pairs(a, reference.relabel(b, p), distance)[0].sum())
        for p in reference.permutations(seed, n, count)
    ]


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize(
    "case",
    ["low rank", "full rank", "ties", "only A symmetric", "neither symmetric"],
)
def test_null_paths_match_relabelling_loop(distance: str, case: str) -> None:
    """Each way of computing the null (low-rank or full products, B or A held fixed, the
    unfused kernel) gives the loop's counts, ties included."""
    n, count, seed = 18, 3, 8
    a, b = random_pair(n, seed=21, d={"low rank": 3, "full rank": 40}.get(case, 5))
    if case == "ties":
        a, b = rounded_pair(n, seed=21, d=4)
    if case in ("only A symmetric", "neither symmetric"):
        b[2, 7] += 0.01
    if case == "neither symmetric":
        a[5, 1] -= 0.01
    result = two_vs_two(a, b, distance=distance, n_permutations=count, seed=seed)
    expected = loop_null(a, b, seed, count, distance)
    np.testing.assert_array_equal(result.null * result.n_pairs, expected)


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize("d", [4, 200])
def test_fused_null_decisions_equal_the_kernel(distance: str, d: int) -> None:
    """The numpy null (fused, low rank for d=4) equals the per-permutation kernel (torch
    backend) count for count at a size where many pairs sit near ties."""
    a, b = rounded_pair(150, seed=5, d=d)
    fused = two_vs_two(a, b, distance=distance, n_permutations=6, seed=1)
    kernel = two_vs_two(a, b, distance=distance, n_permutations=6, seed=1, backend="torch")
    assert fused.n_correct == kernel.n_correct
    np.testing.assert_array_equal(fused.null, kernel.null)
    # Without the cached A terms (memory bound) and on one thread: the same counts.
    small = two_vs_two(
        a, b, distance=distance, n_permutations=6, seed=1, max_block_bytes=2**18, n_jobs=1
    )
    np.testing.assert_array_equal(small.null, fused.null)


def test_low_rank_null_keeps_exact_ties() -> None:
    """Duplicated concepts in spaces of 4-d vectors: the null takes the low-rank products and
    still decides every exact tie (margin 0) as not correct, like the kernel."""
    a, b = random_pair(150, seed=17, d=4)
    a, b = duplicate_concept(a, 7, 8), duplicate_concept(b, 3, 9)
    assert _low_rank(a - a.mean(axis=1, keepdims=True), 50) is not None
    fused = two_vs_two(a, b, n_permutations=8, seed=2)
    kernel = two_vs_two(a, b, n_permutations=8, seed=2, backend="torch")
    np.testing.assert_array_equal(fused.null, kernel.null)
