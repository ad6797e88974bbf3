"""Permutation nulls computed in blocks: concatenated in order they are the full null, bit for
bit, for RSA and 2 vs 2 on every path (fused, low rank, A held fixed, unfused kernel)."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.analyze.permutation import (
    check_block,
    permutation_batches,
    permutation_blocks,
    permutation_stream,
)
from semwh.analyze.rsa import rsa_null, rsa_p_value
from semwh.analyze.two_vs_two import two_vs_two_null, two_vs_two_p_value
from semwh.errors import ConfigError
from tests.unit.analyze import reference
from tests.unit.analyze.devices import DEVICES

N = 11

#: Block boundaries of N = 11 permutations: one block, blocks of 1, uneven with empty blocks.
BOUNDARIES = {
    "whole": [0, N],
    "ones": list(range(N + 1)),
    "uneven": [0, 3, 3, 4, 9, N],
}


def blocks_of(bounds: list[int]) -> list[tuple[int, int]]:
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def random_pair(n: int, seed: int, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return similarity_matrix(x), similarity_matrix(x + 1.5 * rng.standard_normal((n, d)))


def test_stream_blocks_are_slices_of_the_stream() -> None:
    whole = np.concatenate(list(permutation_batches(np.random.default_rng(4), 9, N, 3)))
    assert whole.shape == (N, 9)
    for start, stop in [(0, N), (0, 1), (5, 6), (2, 9), (N, N)]:
        got = list(permutation_stream(np.random.default_rng(4), 9, start, stop, 4))
        block = np.concatenate(got) if got else np.empty((0, 9), dtype=whole.dtype)
        np.testing.assert_array_equal(block, whole[start:stop])
    # The stream is rng.permutation(n) drawn again and again from the seed's Generator.
    np.testing.assert_array_equal(whole, reference.permutations(4, 9, N))


def test_block_splitting_and_bounds() -> None:
    assert permutation_blocks(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert permutation_blocks(3, 1) == [(0, 1), (1, 2), (2, 3)]
    assert permutation_blocks(3, 50) == [(0, 3)]
    assert permutation_blocks(0, 5) == []
    with pytest.raises(ConfigError, match="block size must be an integer >= 1, got 0"):
        permutation_blocks(10, 0)
    assert check_block(2, None, 10) == (2, 10)
    assert check_block(10, 10, 10) == (10, 10)
    with pytest.raises(ConfigError, match=r"block 8\.\.12 is outside the 10 permutations"):
        check_block(8, 12, 10)
    with pytest.raises(ConfigError, match=r"block 5\.\.4"):
        check_block(5, 4, 10)
    with pytest.raises(ConfigError, match=r"block -1\.\.3"):
        check_block(-1, 3, 10)
    with pytest.raises(ConfigError, match="start must be an integer"):
        check_block(1.5, 3, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
@pytest.mark.parametrize("bounds", list(BOUNDARIES), ids=list(BOUNDARIES))
def test_rsa_blocks_concatenate_to_the_null(method: str, bounds: str) -> None:
    a, b = random_pair(9, seed=1)
    full = rsa(a, b, method=method, n_permutations=N, seed=6)
    parts = [
        rsa_null(a, b, method=method, n_permutations=N, start=i, stop=j, seed=6, n_jobs=2)
        for i, j in blocks_of(BOUNDARIES[bounds])
    ]
    for part, (i, j) in zip(parts, blocks_of(BOUNDARIES[bounds]), strict=True):
        assert part.dtype == np.float64 and part.shape == (j - i,)
    null = np.concatenate(parts)
    assert np.array_equal(null, full.null)
    assert rsa_p_value(full.rho, null) == full.p_value


def test_rsa_block_matches_the_relabelling_loop() -> None:
    """A block in the middle of the stream against the slow reference of those permutations."""
    n, seed = 8, 3
    a, b = random_pair(n, seed=2)
    block = rsa_null(a, b, n_permutations=N, start=4, stop=9, seed=seed, batch_size=2)
    expected = [
        reference.rsa(a, reference.relabel(b, p)) for p in reference.permutations(seed, n, N)[4:9]
    ]
    np.testing.assert_allclose(block, expected, atol=1e-9)


def test_rsa_block_past_the_end_is_refused() -> None:
    a, b = random_pair(9, seed=1)
    with pytest.raises(ConfigError, match=r"block 10\.\.12 is outside the 11 permutations"):
        rsa_null(a, b, n_permutations=N, start=10, stop=12, seed=6)
    with pytest.raises(ConfigError, match="unknown RSA method"):
        rsa_null(a, b, method="kendal", n_permutations=N)


def two_vs_two_case(case: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs that take each path of the 2 vs 2 null."""
    a, b = random_pair(18, seed=21, d={"low rank": 3, "full rank": 40}.get(case, 5))
    if case in ("only A symmetric", "neither symmetric"):
        b[2, 7] += 0.01
    if case == "neither symmetric":
        a[5, 1] -= 0.01
    return a, b


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize("case", ["low rank", "full rank", "only A symmetric", "neither symmetric"])
@pytest.mark.parametrize("bounds", list(BOUNDARIES), ids=list(BOUNDARIES))
def test_two_vs_two_blocks_concatenate_to_the_null(distance: str, case: str, bounds: str) -> None:
    a, b = two_vs_two_case(case)
    full = two_vs_two(a, b, distance=distance, n_permutations=N, seed=9)
    null = np.concatenate(
        [
            two_vs_two_null(a, b, distance=distance, n_permutations=N, start=i, stop=j, seed=9)
            for i, j in blocks_of(BOUNDARIES[bounds])
        ]
    )
    assert null.dtype == np.float64
    assert np.array_equal(null, full.null)
    assert two_vs_two_p_value(full.accuracy, null) == full.p_value


def test_two_vs_two_block_matches_the_relabelling_loop() -> None:
    n, seed = 8, 5
    a, b = random_pair(n, seed=6)
    block = two_vs_two_null(a, b, n_permutations=N, start=7, stop=10, seed=seed, n_jobs=1)
    expected = [
        reference.two_vs_two_pairs(a, reference.relabel(b, p))[0].sum() / (n * (n - 1) / 2)
        for p in reference.permutations(seed, n, N)[7:10]
    ]
    np.testing.assert_array_equal(block, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_two_vs_two_torch_blocks_equal_the_numpy_null(device: str) -> None:
    a, b = two_vs_two_case("full rank")
    full = two_vs_two(a, b, n_permutations=5, seed=2)
    parts = [
        two_vs_two_null(
            a, b, n_permutations=5, start=i, stop=j, seed=2, backend="torch", device=device
        )
        for i, j in [(0, 2), (2, 3), (3, 5)]
    ]
    assert np.array_equal(np.concatenate(parts), full.null)


def test_two_vs_two_block_past_the_end_is_refused() -> None:
    a, b = random_pair(9, seed=1)
    with pytest.raises(ConfigError, match=r"block 0\.\.12 is outside the 11 permutations"):
        two_vs_two_null(a, b, n_permutations=N, stop=12, seed=6)
    with pytest.raises(ConfigError, match="n_permutations must be 0 or more"):
        two_vs_two_null(a, b, n_permutations=-1)
    assert two_vs_two_null(a, b, n_permutations=N, start=N).shape == (0,)
