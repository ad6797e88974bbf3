"""The device path of the analyses: the torch kernels, run here on CPU tensors.

``--device auto`` picks CUDA when there is one; the kernels are the same torch code on any
device, so running them on CPU tensors covers the code the GPU runs. The CUDA cases skip
without a device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.errors import DegenerateInputError
from semwh.runs import ComparisonOptions
from tests.unit.analyze.devices import DEVICES


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((90, 6))
    x[4] = x[9]  # exact ties
    return similarity_matrix(x), similarity_matrix(x + 1.2 * rng.standard_normal((90, 6)))


@pytest.mark.parametrize("device", DEVICES)
def test_two_vs_two_torch_makes_the_numpy_decisions(
    pair: tuple[np.ndarray, np.ndarray], device: str, tmp_path: Path
) -> None:
    a, b = pair
    want = two_vs_two(a, b, n_permutations=4, seed=5, return_pairs=True)
    fa = np.memmap(tmp_path / "a.f64", dtype=np.float64, mode="w+", shape=a.shape)
    fa[:] = a
    for sa, block in ((a, 2**40), (fa, 30 * 8 * 90 * 5)):
        got = two_vs_two(
            sa, b, n_permutations=4, seed=5, backend="torch", device=device, max_block_bytes=block
        )
        assert got.n_correct == want.n_correct
        np.testing.assert_array_equal(got.null, want.null)
        assert got.p_value == want.p_value
    pairs = two_vs_two(a, b, return_pairs=True, backend="torch", device=device)
    np.testing.assert_array_equal(pairs.pair_correct, want.pair_correct)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_rsa_torch_null_equals_the_numpy_null(
    pair: tuple[np.ndarray, np.ndarray], device: str, method: str
) -> None:
    a, b = pair
    want = rsa(a, b, method=method, n_permutations=6, seed=2)
    got = rsa(a, b, method=method, n_permutations=6, seed=2, backend="torch", device=device)
    assert got.rho == want.rho
    np.testing.assert_allclose(got.null, want.null, rtol=0, atol=1e-13)
    assert got.p_value == want.p_value


def test_auto_device_is_cuda_when_available() -> None:
    options = ComparisonOptions.make("2v2", device="auto")
    assert options.device == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("distance", ["pearson", "cosine"])
def test_undefined_pairs_found_on_the_device_as_on_the_host(device: str, distance: str) -> None:
    from semwh.analyze.two_vs_two import undefined_pairs

    rng = np.random.default_rng(3)
    s = similarity_matrix(rng.standard_normal((12, 5)))
    v = 0.0 if distance == "cosine" else 0.5
    s[5] = s[:, 5] = v  # constant whatever is removed
    s[5, 5] = 1.0
    s[2, [k for k in range(12) if k not in (2, 7)]] = v  # constant once 7 is removed
    want = undefined_pairs(s, distance)
    assert len(want) > 11
    got = undefined_pairs(torch.as_tensor(s, device=device), distance, block_entries=40)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(DegenerateInputError, match="concept pair"):
        two_vs_two(s, s, distance=distance, backend="torch", device=device)
