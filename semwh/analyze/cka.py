"""Linear centred kernel alignment (CKA) between two concept x feature matrices.

With K = X X^T and L = Y Y^T the linear Gram matrices of the concepts of A and B:

* ``unbiased`` (default): the debiased estimator of Song et al. (2012), as used for CKA by
  Nguyen et al. (2021): with K~, L~ the Gram matrices with their diagonals set to zero,
  HSIC_u(K, L) = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),
  and CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)). It is not inflated when the
  features outnumber the concepts, and can be slightly negative.
* ``biased``: Kornblith et al. (2019), CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F) with H
  the centring matrix.

Both are 1 for a space with itself and invariant to rotations and isotropic scaling of
either space. The permutation test relabels the concepts of B (rows and columns of L
together): a relabelled L holds the same entries, so every null value is one gather and one
dot product over the Gram matrices computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semwh.analyze import kernels as compiled_kernels
from semwh.analyze._checks import name_concepts
from semwh.analyze._matrices import as_matrix_pair
from semwh.analyze.permutation import (
    check_block,
    check_n_permutations,
    make_rng,
    null_from,
    permutation_p_value,
    permutation_stream,
)
from semwh.analyze.rsa import check_device as _check_device
from semwh.errors import ConfigError, DegenerateInputError

CKA_ESTIMATORS = ("unbiased", "biased")


@dataclass(frozen=True)
class CKAResult:
    """Outcome of :func:`linear_cka`.

    Attributes:
        cka: the CKA of the two spaces.
        p_value: permutation p-value, (1 + #{null >= cka}) / (1 + N); None when N = 0.
        null: the N permuted statistics, in the order the permutations were drawn.
        n_concepts: number of concepts n.
        n_permutations: N.
        seed: seed of the permutations (None when a Generator was passed in).
        estimator: "unbiased" or "biased".
    """

    cka: float
    p_value: float | None
    null: np.ndarray = field(repr=False)
    n_concepts: int
    n_permutations: int
    seed: int | None
    estimator: str


class _Kernels:
    """The Gram matrices of one comparison, prepared for the estimator."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        estimator: str,
        names: list[str],
        space_a: str,
        space_b: str,
    ) -> None:
        if estimator not in CKA_ESTIMATORS:
            raise ConfigError(
                f"unknown CKA estimator {estimator!r} (choose {', '.join(CKA_ESTIMATORS)})"
            )
        self.estimator = estimator
        self.n = x.shape[0]
        if estimator == "biased":
            xc = x - x.mean(axis=0)
            yc = y - y.mean(axis=0)
            self.k = xc @ xc.T
            self.l = yc @ yc.T
            self_k = float(np.sum(self.k * self.k))
            self_l = float(np.sum(self.l * self.l))
        else:
            self.k = x @ x.T
            self.l = y @ y.T
            np.fill_diagonal(self.k, 0.0)
            np.fill_diagonal(self.l, 0.0)
            self.k_rows = self.k.sum(axis=1)
            self.l_rows = self.l.sum(axis=1)
            self.k_sum = float(self.k_rows.sum())
            self.l_sum = float(self.l_rows.sum())
            self_k = self._hsic(
                float(np.sum(self.k * self.k)),
                self.k_sum,
                self.k_sum,
                float(self.k_rows @ self.k_rows),
            )
            self_l = self._hsic(
                float(np.sum(self.l * self.l)),
                self.l_sum,
                self.l_sum,
                float(self.l_rows @ self.l_rows),
            )
        for value, space, m in ((self_k, space_a, x), (self_l, space_b, y)):
            if not value > 0:
                spread = np.linalg.norm(m - m.mean(axis=0), axis=1)
                raise DegenerateInputError(
                    f"space {space!r}: the concept vectors carry no centred variance "
                    f"(its {estimator} HSIC with itself is {value:.3g}), so CKA is undefined; "
                    f"concepts: {name_concepts(names, np.argsort(spread)[:10])}"
                )
        self.scale = float(np.sqrt(self_k * self_l))

    def _hsic(self, trace: float, k_sum: float, l_sum: float, cross: float) -> float:
        n = self.n
        return (trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))

    def statistic(self, perm: np.ndarray | None = None) -> float:
        lp = self.l if perm is None else self.l[np.ix_(perm, perm)]
        return self._from_trace(float(np.sum(self.k * lp)), perm)

    def null(
        self,
        rng: np.random.Generator,
        start: int,
        stop: int,
        backend: str = "numpy",
        device: str = "cpu",
    ) -> np.ndarray:
        """Statistics of permutations start..stop-1 of the stream of ``rng``.

        The compiled path gathers the relabelled L once per pair for a block of
        permutations (both Gram matrices are exactly symmetric: sum(K * L') is twice the
        upper triangle's sum plus the diagonal's); the numpy path is the reference; the
        torch backend relabels L on ``device`` in float64.
        """
        if backend == "torch":
            return self._torch_null(rng, start, stop, device)
        if (
            stop > start
            and compiled_kernels.use_compiled(self.n)
            and np.array_equal(self.k, self.k.T)
            and np.array_equal(self.l, self.l.T)
        ):
            state = rng.bit_generator.state
            parts: list[float] = []
            for perms in permutation_stream(
                rng, self.n, start, stop, compiled_kernels.PERMUTATION_BLOCK
            ):
                traces = compiled_kernels.run(
                    "gathered_dots", self.k, self.l, perms.astype(np.int64), True
                )
                if traces is None:
                    rng.bit_generator.state = state
                    break
                parts.extend(
                    self._from_trace(2.0 * t, p) for t, p in zip(traces, perms, strict=True)
                )
            else:
                return np.asarray(parts, dtype=np.float64)
        return null_from(self.statistic, rng, self.n, start, stop, 16)

    def _torch_null(
        self, rng: np.random.Generator, start: int, stop: int, device: str
    ) -> np.ndarray:
        import torch

        dev = torch.device(device)
        k = torch.as_tensor(self.k, dtype=torch.float64, device=dev)
        lk = torch.as_tensor(self.l, dtype=torch.float64, device=dev)
        traces: list[Any] = []
        drawn: list[np.ndarray] = []
        for perms in permutation_stream(rng, self.n, start, stop, 16):
            for p in torch.as_tensor(perms, device=dev):
                traces.append(torch.sum(k * lk.index_select(0, p).index_select(1, p)))
            drawn.extend(perms)
        if not traces:
            return np.empty(0, dtype=np.float64)
        values = torch.stack(traces).cpu().numpy()
        return np.array(
            [self._from_trace(float(t), p) for t, p in zip(values, drawn, strict=True)],
            dtype=np.float64,
        )

    def _from_trace(self, trace: float, perm: np.ndarray | None) -> float:
        if self.estimator == "biased":
            return trace / self.scale
        rows = self.l_rows if perm is None else self.l_rows[perm]
        return self._hsic(trace, self.k_sum, self.l_sum, float(self.k_rows @ rows)) / self.scale


def _prepare(x, y, estimator, labels, space_a, space_b) -> _Kernels:
    a, b, names = as_matrix_pair(x, y, labels, space_a, space_b)
    return _Kernels(a, b, estimator, names, space_a, space_b)


def linear_cka(
    x: np.ndarray,
    y: np.ndarray,
    *,
    estimator: str = "unbiased",
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    backend: str = "numpy",
    device: str = "cpu",
) -> CKAResult:
    """Linear CKA of two spaces over the same concepts, with a permutation test.

    Args:
        x: n x d_a vectors of space A, one row per concept.
        y: n x d_b vectors of space B, same concepts in the same order.
        estimator: "unbiased" (debiased HSIC, default) or "biased".
        n_permutations: number N of relabellings of B's concepts; 0 skips the test.
        seed: integer seed (recorded) or a numpy Generator (recorded as None).
        labels: concept ids of the rows, for error messages.
        space_a: name of space A, for error messages.
        space_b: name of space B, for error messages.
        backend: "numpy" (default: the compiled or numpy CPU path) or "torch": the null
            gathers on ``device`` in float64 (same values up to the order of the sums).
        device: "cpu", or "cuda"/"cuda:N" with the torch backend.

    Raises:
        ConfigError: unknown estimator or bad permutation settings.
        InputError: matrices that are not n x d over the same number of concepts.
        DegenerateInputError: fewer than 4 concepts, NaN/inf, or a space without variance.
    """
    n_permutations = check_n_permutations(n_permutations)
    _check_device(backend, device)
    kernels = _prepare(x, y, estimator, labels, space_a, space_b)
    rng, recorded = make_rng(seed)
    stat = kernels.statistic()
    null = kernels.null(rng, 0, n_permutations, backend, device)
    return CKAResult(
        cka=stat,
        p_value=permutation_p_value(stat, null) if n_permutations else None,
        null=null,
        n_concepts=kernels.n,
        n_permutations=n_permutations,
        seed=recorded,
        estimator=estimator,
    )


def cka_null(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_permutations: int,
    start: int = 0,
    stop: int | None = None,
    estimator: str = "unbiased",
    seed: int | np.random.Generator = 0,
    labels: Sequence[str] | None = None,
    space_a: str = "A",
    space_b: str = "B",
    backend: str = "numpy",
    device: str = "cpu",
) -> np.ndarray:
    """Null statistics of permutations ``start..stop-1`` of :func:`linear_cka`'s test.

    Blocks covering 0..N, concatenated in order, equal ``linear_cka(...).null`` bit for bit.
    """
    start, stop = check_block(start, stop, n_permutations)
    _check_device(backend, device)
    kernels = _prepare(x, y, estimator, labels, space_a, space_b)
    rng, _ = make_rng(seed)
    return kernels.null(rng, start, stop, backend, device)
