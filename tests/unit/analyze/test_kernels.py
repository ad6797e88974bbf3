"""The compiled permutation kernels against the numpy reference and the pair-by-pair loops.

Every test that takes ``kernels`` runs twice in one session: with the compiled (numba)
kernels and with the numpy reference path (``SEMWH_KERNELS``), so both paths are checked
against the slow references whatever the environment chooses. Inputs are small (the
kernels are compiled once per machine and cached), with tied concepts.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import semwh.analyze
from semwh.analyze import kernels as compiled_kernels
from semwh.analyze import regression, rsa, similarity_matrix, two_vs_two
from semwh.analyze.cka import cka_null, linear_cka
from semwh.analyze.regression import regression_two_vs_two
from semwh.analyze.rsa import rsa_null
from semwh.analyze.two_vs_two import two_vs_two_null
from semwh.config import kernel_choice
from semwh.errors import ConfigError
from tests.unit.analyze import reference
from tests.unit.analyze.devices import DEVICES


@pytest.fixture(params=["numba", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SEMWH_KERNELS", request.param)
    if request.param == "numba" and compiled_kernels.compiled() is None:
        pytest.fail("numba is a dependency: the compiled kernels must load here")
    return request.param


def vectors(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two related spaces with tied concepts (identical vectors) in both."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = x[:, ::-1] + rng.standard_normal((n, d))
    x[4], y[4] = x[1], y[1]
    x[7] = x[2]
    return x, y


#: Inputs that take each path of the compiled 2 vs 2 null: both sides low rank, one side
#: low rank, full rank, and B not symmetric (A relabelled instead).
TWO_VS_TWO_CASES = {"both low rank": (3, 3), "A low rank": (3, 30), "full rank": (30, 30)}


def two_vs_two_inputs(case: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    d_a, d_b = TWO_VS_TWO_CASES.get(case, (5, 5))
    x, y = vectors(n, max(d_a, d_b), seed)
    a, b = similarity_matrix(x[:, :d_a]), similarity_matrix(y[:, :d_b])
    if case == "only A symmetric":
        b[2, 9] += 0.01
    return a, b


@pytest.mark.parametrize(
    ("case", "distance"),
    [
        ("both low rank", "pearson"),
        ("A low rank", "cosine"),
        ("full rank", "pearson"),
        ("only A symmetric", "pearson"),
    ],
)
def test_two_vs_two_null_is_the_pair_loop(kernels: str, distance: str, case: str) -> None:
    n, seed = 12, 3
    a, b = two_vs_two_inputs(case, n, seed=1)
    null = two_vs_two_null(a, b, distance=distance, n_permutations=2, seed=seed)
    expected = [
        reference.two_vs_two_pairs(a, reference.relabel(b, p), distance)[0].sum()
        / (n * (n - 1) / 2)
        for p in reference.permutations(seed, n, 2)
    ]
    np.testing.assert_array_equal(null, expected)


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
@pytest.mark.parametrize("case", [*TWO_VS_TWO_CASES, "only A symmetric"])
def test_compiled_two_vs_two_counts_equal_the_reference(
    monkeypatch: pytest.MonkeyPatch, distance: str, case: str
) -> None:
    a, b = two_vs_two_inputs(case, 70, seed=2)
    results = {}
    for choice in ("numba", "numpy"):
        monkeypatch.setenv("SEMWH_KERNELS", choice)
        results[choice] = two_vs_two(a, b, distance=distance, n_permutations=30, seed=4)
    assert np.array_equal(results["numba"].null, results["numpy"].null)
    assert results["numba"].p_value == results["numpy"].p_value


@pytest.mark.parametrize("distance", ["pearson", "cosine"])
def test_two_vs_two_null_without_tie_tolerance_is_the_reference(
    monkeypatch: pytest.MonkeyPatch, distance: str
) -> None:
    # Correlations of 2-d vectors are all +-1: every margin is an exact tie, so with
    # tie_tol=0 each count is decided by the last bits of the arithmetic.
    x, y = np.random.default_rng(53).standard_normal((2, 31, 2))
    a, b = similarity_matrix(x), similarity_matrix(y)
    nulls = {}
    for choice in ("numba", "numpy"):
        monkeypatch.setenv("SEMWH_KERNELS", choice)
        nulls[choice] = two_vs_two_null(a, b, distance=distance, n_permutations=8, tie_tol=0)
    np.testing.assert_array_equal(nulls["numba"], nulls["numpy"])


def test_spearman_rsa_null_is_the_reference_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Centred ranks are multiples of 1/2: at this size every sum is exact on both paths,
    # so only the final scaling could tell them apart.
    rng = np.random.default_rng(64)
    x, y = rng.integers(0, 5, (2, 20, 8)).astype(float)
    a, b = similarity_matrix(x), similarity_matrix(y)
    nulls = {}
    for choice in ("numba", "numpy"):
        monkeypatch.setenv("SEMWH_KERNELS", choice)
        nulls[choice] = rsa_null(a, b, n_permutations=65, seed=5)
    np.testing.assert_array_equal(nulls["numba"], nulls["numpy"])


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_rsa_null_is_the_relabelling_loop(kernels: str, method: str) -> None:
    n, seed = 12, 5
    x, y = vectors(n, 4, seed=2)
    a, b = similarity_matrix(x), similarity_matrix(y)
    null = rsa(a, b, method=method, n_permutations=6, seed=seed).null
    expected = [
        reference.rsa(a, reference.relabel(b, p), method)
        for p in reference.permutations(seed, n, 6)
    ]
    np.testing.assert_allclose(null, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_cka_null_is_the_relabelling_loop(kernels: str, estimator: str) -> None:
    n, seed = 12, 6
    x, y = vectors(n, 5, seed=3)
    null = linear_cka(x, y, estimator=estimator, n_permutations=6, seed=seed).null
    expected = [reference.cka(x, y[p], estimator) for p in reference.permutations(seed, n, 6)]
    np.testing.assert_allclose(null, expected, rtol=0, atol=1e-12)


def test_compiled_rsa_and_cka_equal_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = vectors(90, 6, seed=4)
    a, b = similarity_matrix(x), similarity_matrix(y)
    nulls: dict[str, list[np.ndarray]] = {}
    for choice in ("numba", "numpy"):
        monkeypatch.setenv("SEMWH_KERNELS", choice)
        nulls[choice] = [
            rsa(a, b, method="spearman", n_permutations=40, seed=1).null,
            rsa(a, b, method="pearson", n_permutations=40, seed=1).null,
            linear_cka(x, y, n_permutations=40, seed=1).null,
            linear_cka(x, y, estimator="biased", n_permutations=40, seed=1).null,
        ]
    for fast, ref in zip(nulls["numba"], nulls["numpy"], strict=True):
        np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)


def test_compiled_blocks_concatenate_whatever_the_threads(kernels: str) -> None:
    x, y = vectors(40, 5, seed=5)
    a, b = similarity_matrix(x), similarity_matrix(y)
    whole = two_vs_two(a, b, n_permutations=11, seed=2, n_jobs=2).null
    parts = [
        two_vs_two_null(a, b, n_permutations=11, start=i, stop=j, seed=2, n_jobs=1)
        for i, j in [(0, 3), (3, 10), (10, 11)]
    ]
    assert np.array_equal(np.concatenate(parts), whole)
    whole = rsa(a, b, n_permutations=11, seed=2, n_jobs=2).null
    parts = [
        rsa_null(a, b, n_permutations=11, start=i, stop=j, seed=2) for i, j in [(0, 5), (5, 11)]
    ]
    assert np.array_equal(np.concatenate(parts), whole)
    whole = linear_cka(x, y, n_permutations=11, seed=2).null
    parts = [
        cka_null(x, y, n_permutations=11, start=i, stop=j, seed=2) for i, j in [(0, 9), (9, 11)]
    ]
    assert np.array_equal(np.concatenate(parts), whole)


def test_without_numba_the_numpy_path_runs_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = vectors(20, 4, seed=6)
    a, b = similarity_matrix(x), similarity_matrix(y)
    monkeypatch.setenv("SEMWH_KERNELS", "numpy")
    expected = two_vs_two(a, b, n_permutations=5, seed=1).null
    # numba not importable, as on a machine without it.
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "semwh.analyze._numba_kernels", raising=False)
    monkeypatch.delattr(semwh.analyze, "_numba_kernels", raising=False)
    monkeypatch.setattr(compiled_kernels, "_loaded", {})
    monkeypatch.setattr(compiled_kernels, "_said", [])
    monkeypatch.setenv("SEMWH_KERNELS", "numba")
    assert np.array_equal(two_vs_two(a, b, n_permutations=5, seed=1).null, expected)
    rsa(a, b, n_permutations=3)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "compiled kernels unavailable" in lines[0] and "using numpy" in lines[0]


def test_without_numba_every_kernel_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = vectors(12, 4, seed=6)
    a, b = similarity_matrix(x), similarity_matrix(y)
    monkeypatch.setattr(regression, "COMPILED_FROM", 4)
    monkeypatch.setenv("SEMWH_KERNELS", "numpy")
    expected = (two_vs_two(a, b, n_permutations=3).null, regression_two_vs_two(x, y).correct)
    monkeypatch.setitem(sys.modules, "numba", None)
    for module in ("_numba_kernels", "regression_compiled"):
        monkeypatch.setitem(sys.modules, f"semwh.analyze.{module}", None)
        monkeypatch.delattr(semwh.analyze, module, raising=False)
    monkeypatch.setattr(compiled_kernels, "_loaded", {})
    monkeypatch.setattr(regression, "_COMPILED", {})
    monkeypatch.setattr(compiled_kernels, "_said", [])
    monkeypatch.setenv("SEMWH_KERNELS", "numba")
    capsys.readouterr()
    assert np.array_equal(two_vs_two(a, b, n_permutations=3).null, expected[0])
    assert np.array_equal(regression_two_vs_two(x, y).correct, expected[1])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "compiled kernels unavailable" in lines[0], lines


_FORKED_CHILD = """
import os, sys
import numpy as np
from semwh.analyze import rsa, similarity_matrix
x, y = np.random.default_rng(0).standard_normal((2, 30, 5))
a, b = similarity_matrix(x), similarity_matrix(y)
parent = rsa(a, b, n_permutations=70, seed=1).null
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(rsa(a, b, n_permutations=70, seed=1).null, parent) else 3)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_a_forked_child_runs_the_compiled_kernels_as_its_parent() -> None:
    # A process that ran a parallel kernel and then forks (a multiprocessing pool): the
    # child's kernels must run and give the parent's numbers (GNU OpenMP kills the child).
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["SEMWH_KERNELS"] = "numba"
    proc = subprocess.run(
        [sys.executable, "-c", _FORKED_CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_kernel_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernel_choice({}) == "auto"
    assert kernel_choice({"SEMWH_KERNELS": "NumPy"}) == "numpy"
    with pytest.raises(ConfigError, match=r"SEMWH_KERNELS='cuda' is not a kernel choice"):
        kernel_choice({"SEMWH_KERNELS": "cuda"})
    monkeypatch.setenv("SEMWH_KERNELS", "auto")
    small = compiled_kernels.MIN_CONCEPTS - 1
    assert not compiled_kernels.use_compiled(small)
    assert compiled_kernels.use_compiled(small + 1)
    monkeypatch.setenv("SEMWH_KERNELS", "numpy")
    assert not compiled_kernels.use_compiled(10_000)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_cka_torch_null_equals_the_reference(device: str, estimator: str) -> None:
    x, y = vectors(30, 5, seed=7)
    expected = linear_cka(x, y, estimator=estimator, n_permutations=9, seed=3)
    found = linear_cka(
        x, y, estimator=estimator, n_permutations=9, seed=3, backend="torch", device=device
    )
    np.testing.assert_allclose(found.null, expected.null, rtol=0, atol=1e-12)
    assert found.p_value == expected.p_value
    block = cka_null(
        x, y, estimator=estimator, n_permutations=9, start=4, stop=9, seed=3,
        backend="torch", device=device,
    )  # fmt: skip
    np.testing.assert_allclose(block, expected.null[4:], rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="unknown backend 'jax'"):
        linear_cka(x, y, backend="jax")
