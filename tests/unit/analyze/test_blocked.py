"""Row-blocked analyses: file-backed inputs and any block size give the in-memory numbers.

The single tests read their n x n inputs a block of rows at a time; these cases pin that the
numbers do not depend on where the inputs live (memory or a numpy memmap), on the block size,
or on the low-rank route of the 2 vs 2 cross products, and that memory beyond the inputs
stays a small multiple of n x block.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.analyze.rsa import centred_ranks2
from semwh.analyze.similarity import TILE_ROWS
from semwh.analyze.two_vs_two_margins import BlockMargins
from tests.unit.analyze import reference


def _spaces(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, x + 1.5 * rng.standard_normal((n, d))


def _memmap(path: Path, n: int) -> np.ndarray:
    return np.memmap(path, dtype=np.float64, mode="w+", shape=(n, n))


def _in_memory_count(a: np.ndarray, b: np.ndarray, distance: str) -> int:
    """Correct pairs by the kernel holding centred copies of both matrices, in one block."""
    kernel = BlockMargins(a, distance, "numpy", "cpu")
    kernel.set_b(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return kernel.count_correct(1e-10, 2**40)


@pytest.mark.parametrize("n", [5, TILE_ROWS - 1, TILE_ROWS + 3])
@pytest.mark.parametrize("metric", ["pearson", "cosine"])
def test_similarity_in_a_file_equals_in_memory(tmp_path: Path, n: int, metric: str) -> None:
    x, _ = _spaces(n, 7, n)
    whole = similarity_matrix(x, metric=metric)
    out = _memmap(tmp_path / "s.f64", n)
    filled = similarity_matrix(x, metric=metric, out=out)
    assert filled is out
    np.testing.assert_array_equal(np.asarray(out), whole)
    assert np.array_equal(whole, whole.T) and np.all(np.diag(whole) == 1.0)
    if n < 10:
        np.testing.assert_allclose(whole, reference.similarity(x, metric), atol=1e-12)


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize("n", [9, 70, 211])
def test_two_vs_two_blocks_and_files_equal_in_memory(tmp_path: Path, distance: str, n: int) -> None:
    x, y = _spaces(n, 6, n + 1)
    a, b = similarity_matrix(x), similarity_matrix(y)
    want = _in_memory_count(a, b, distance)
    if n < 10:
        assert want == int(np.sum(reference.two_vs_two_pairs(a, b, distance)[0]))
    fa, fb = _memmap(tmp_path / "a.f64", n), _memmap(tmp_path / "b.f64", n)
    fa[:], fb[:] = a, b
    whole = two_vs_two(a, b, distance=distance, return_pairs=True)
    assert whole.n_correct == want
    # One row per block, a few rows, everything in one block; memory and file inputs.
    for block_bytes in (1, 30 * 8 * n * 7, 2**40):
        for sa, sb in ((a, b), (fa, fb)):
            got = two_vs_two(sa, sb, distance=distance, max_block_bytes=block_bytes)
            assert got.n_correct == want
        pairs = two_vs_two(
            fa, fb, distance=distance, return_pairs=True, max_block_bytes=block_bytes
        )
        np.testing.assert_array_equal(pairs.pair_correct, whole.pair_correct)
        np.testing.assert_allclose(pairs.pair_margin, whole.pair_margin, rtol=0, atol=1e-12)
    # The observed statistic does not depend on a null being computed.
    assert two_vs_two(a, b, distance=distance, n_permutations=2, seed=0).n_correct == want


def test_two_vs_two_low_rank_route_equals_in_memory(tmp_path: Path) -> None:
    """From 1024 concepts on, a low-rank side (here words of 12 dimensions) carries the
    cross products; the decisions are the full products' ones, also with ties."""
    n = 1030
    rng = np.random.default_rng(5)
    words = rng.standard_normal((n, 12))
    words[7] = words[3]  # a duplicated concept: exact ties
    layer = rng.standard_normal((n, 400))
    a, b = similarity_matrix(layer), similarity_matrix(words)
    want = _in_memory_count(a, b, "pearson")
    fa, fb = _memmap(tmp_path / "a.f64", n), _memmap(tmp_path / "b.f64", n)
    fa[:], fb[:] = a, b
    assert two_vs_two(fa, fb).n_correct == want
    assert two_vs_two(b, a, max_block_bytes=2**22).n_correct == want


def test_two_vs_two_memory_beyond_inputs_is_blocks(tmp_path: Path) -> None:
    n = 900
    x, y = _spaces(n, 20, 2)
    fa, fb = _memmap(tmp_path / "a.f64", n), _memmap(tmp_path / "b.f64", n)
    similarity_matrix(x, out=fa)
    similarity_matrix(y, out=fb)
    block_bytes = 2**20
    tracemalloc.start()
    try:
        two_vs_two(fa, fb, max_block_bytes=block_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Two centred copies would be 13 MB; the blocks and row statistics are a few MB.
    assert peak < 4 * block_bytes < 2 * n * n * 8


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
@pytest.mark.parametrize("ties", [False, True])
def test_rsa_from_files_equals_in_memory(tmp_path: Path, method: str, ties: bool) -> None:
    n = 41
    x, y = _spaces(n, 5, 3)
    a, b = similarity_matrix(x), similarity_matrix(y)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    fa, fb = _memmap(tmp_path / "a.f64", n), _memmap(tmp_path / "b.f64", n)
    fa[:], fb[:] = a, b
    whole = rsa(a, b, method=method)
    assert rsa(fa, fb, method=method).rho == whole.rho
    assert rsa(a, b, method=method, n_permutations=3, seed=1).rho == whole.rho
    assert whole.rho == pytest.approx(reference.rsa(a, b, method), abs=1e-12)


def test_centred_ranks_are_scipys_doubled() -> None:
    rng = np.random.default_rng(8)
    for u in (rng.standard_normal(500), np.round(rng.standard_normal(500), 1), np.zeros(6)):
        doubled = 2 * stats.rankdata(u) - (u.size + 1)
        np.testing.assert_array_equal(centred_ranks2(u), doubled)
