"""Timings of the analysis kernels (run: .venv/bin/python benchmarks/analysis.py).

Prints, in one run:
  * 2 vs 2 at n=300: fast path against the pair-by-pair reference loop (the loop runs over a
    random subsample of pairs and is extrapolated to all pairs);
  * 2 vs 2 at n=1000 with 1000 permutations (target <= 60 s on 2 cores), for spaces of
    50-d vectors (low-rank similarity matrices) and, with --full-rank-perms > 0, of 2000-d
    vectors (full rank, like wide CNN layers);
  * RSA (Spearman) Mantel test at n=1000 with 1000 permutations (target <= 5 s) against
    re-ranking every permutation (the re-ranking baseline runs a subsample of permutations
    and is extrapolated);
  * linear CKA (unbiased) at n=1000 with 1000 permutations against recomputing the debiased
    HSIC from the relabelled vectors for every permutation (subsample, extrapolated), and
    mutual k-NN (k=10) with 1000 permutations;
  * regression 2 vs 2 at n=1000 (7 penalties, inner leave-one-out) against refitting ridge
    for every pair and every inner left-out concept (a few pairs, extrapolated to all), and
    its compiled inner cross-validation against the numpy path at n=400, then alone at
    n=1000 (target <= 30 s).
  ``--measures-only`` runs the last two items alone.
  ``--kernels-only`` runs only the compiled kernels against the numpy reference path, in
  this process one after the other (``SEMWH_KERNELS=numba`` then ``numpy``), at n=1000 with
  64-d and 48-d spaces (low rank) and 2000-d ones (full rank): 2 vs 2, RSA (Spearman), CKA
  (unbiased); each line gives both times for 1000 permutations, their ratio and the
  1-minute load average before and after. A full run ends with these lines.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy import stats

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.analyze.cka import linear_cka
from semwh.analyze.knn import mutual_knn
from semwh.analyze.regression import DEFAULT_PENALTIES, penalty_grid, regression_two_vs_two


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs visible, numpy {np.__version__}, "
        f"load average {load()} at start"
    )


def load() -> str:
    """The 1-minute load average, to print next to each timing."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def spaces(n: int, seed: int, d: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return similarity_matrix(x), similarity_matrix(x + 2.0 * rng.standard_normal((n, d)))


def loop_pairs(a: np.ndarray, b: np.ndarray, pairs: np.ndarray) -> int:
    """The reference: one pair at a time, rows cut and correlated with numpy."""
    n = len(a)
    correct = 0
    for i, j in pairs:
        keep = np.ones(n, dtype=bool)
        keep[[i, j]] = False
        a_i, a_j, b_i, b_j = a[i, keep], a[j, keep], b[i, keep], b[j, keep]
        lhs = (1 - np.corrcoef(a_i, b_i)[0, 1]) + (1 - np.corrcoef(a_j, b_j)[0, 1])
        rhs = (1 - np.corrcoef(a_i, b_j)[0, 1]) + (1 - np.corrcoef(a_j, b_i)[0, 1])
        correct += lhs < rhs - 1e-10
    return correct


def hsic_u(k: np.ndarray, lk: np.ndarray) -> float:
    """Debiased HSIC from two Gram matrices, straight from the formula."""
    n = len(k)
    k, lk = k.copy(), lk.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(lk, 0.0)
    one = np.ones(n)
    return float(
        np.trace(k @ lk)
        + (one @ k @ one) * (one @ lk @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ k @ lk @ one)
    ) / (n * (n - 3))


def cka_recomputed(x: np.ndarray, y: np.ndarray) -> float:
    """The baseline of a CKA permutation: new Gram matrix, products and norms from scratch."""
    k, lk = x @ x.T, y @ y.T
    return hsic_u(k, lk) / np.sqrt(hsic_u(k, k) * hsic_u(lk, lk))


def ridge_pair(x: np.ndarray, y: np.ndarray, i: int, j: int, lams: np.ndarray) -> bool:
    """The baseline of regression 2 vs 2: refit ridge for each inner left-out concept and
    penalty, choose the penalty, refit on the pair's training concepts, compare (cosine)."""

    def fit_predict(train: np.ndarray, lam: float, test: np.ndarray) -> np.ndarray:
        mx, my = x[train].mean(axis=0), y[train].mean(axis=0)
        xc = x[train] - mx
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y[train] - my))
        return (x[test] - mx) @ w + my

    train = np.setdiff1d(np.arange(len(x)), [i, j])
    errors = []
    for lam in lams:
        err = 0.0
        for k in train:
            pred = fit_predict(train[train != k], lam, np.array([k]))[0]
            err += float(np.sum((pred - y[k]) ** 2))
        errors.append(err)
    p_i, p_j = fit_predict(train, lams[int(np.argmin(errors))], np.array([i, j]))

    def cos(u: np.ndarray, v: np.ndarray) -> float:
        return float(u @ v / np.sqrt((u @ u) * (v @ v)))

    return cos(p_i, y[j]) + cos(p_j, y[i]) + 1e-10 < cos(p_i, y[i]) + cos(p_j, y[j])


def timed_null(run, perms: int) -> tuple[float, float]:
    """Seconds (wall, CPU of all threads) of the null alone for 1000 permutations: a run with
    ``perms`` permutations less a run with none (the statistic), scaled."""
    start, cpu = time.perf_counter(), time.process_time()
    run(0)
    base, base_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    run(perms)
    wall = time.perf_counter() - start - base
    used = time.process_time() - cpu - base_cpu
    return max(0.0, wall) * 1000 / perms, max(0.0, used) * 1000 / perms


def kernels(args: argparse.Namespace) -> None:
    """Each compiled kernel against the numpy reference path, same process, same inputs."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1000, 64))
    y = x[:, :48] @ rng.standard_normal((48, 48)) + 2.0 * rng.standard_normal((1000, 48))
    a, b = similarity_matrix(x), similarity_matrix(y)
    wide_x = rng.standard_normal((1000, 2000))
    wide_y = wide_x + 2.0 * rng.standard_normal((1000, 2000))
    fa, fb = similarity_matrix(wide_x), similarity_matrix(wide_y)
    cases = [
        ("2 vs 2, 64-d vs 48-d (low rank)", lambda n: two_vs_two(a, b, n_permutations=n),
         args.kernel_perms, args.reference_perms),
        ("2 vs 2, 2000-d (full rank)", lambda n: two_vs_two(fa, fb, n_permutations=n),
         args.full_rank_kernel_perms, args.full_rank_reference_perms),
        ("RSA Spearman, 64-d vs 48-d", lambda n: rsa(a, b, n_permutations=n), 1000, 200),
        ("CKA unbiased, 64-d vs 48-d", lambda n: linear_cka(x, y, n_permutations=n), 1000, 100),
    ]  # fmt: skip
    saved = os.environ.get("SEMWH_KERNELS")
    try:
        for name, run, fast_perms, ref_perms in cases:
            times = {}
            before = load()
            for choice, perms in (("numba", fast_perms), ("numpy", ref_perms)):
                os.environ["SEMWH_KERNELS"] = choice
                run(2)  # compile (first use on this machine) and warm up
                times[choice] = timed_null(run, perms)
            (fast, fast_cpu), (ref, ref_cpu) = times["numba"], times["numpy"]
            print(
                f"{name}, n=1000, 1000 permutations (null only): compiled {fast:.2f} s "
                f"(CPU {fast_cpu:.2f} s; from {fast_perms}), numpy {ref:.2f} s (CPU "
                f"{ref_cpu:.2f} s; from {ref_perms}), x{ref / max(fast, 1e-9):.1f} "
                f"(CPU x{ref_cpu / max(fast_cpu, 1e-9):.1f}); load {before} -> {load()}",
                flush=True,
            )
    finally:
        if saved is None:
            os.environ.pop("SEMWH_KERNELS", None)
        else:
            os.environ["SEMWH_KERNELS"] = saved
    before = load()
    start = time.perf_counter()
    mutual_knn(x, y, k=10, n_permutations=1000, seed=0)
    print(
        f"mutual k-NN (k=10), n=1000, 1000 permutations: {time.perf_counter() - start:.2f} s "
        f"(numpy only: no compiled kernel); load {before} -> {load()}",
        flush=True,
    )


def measures(args: argparse.Namespace) -> None:
    """CKA, mutual k-NN and regression 2 vs 2 at n = 1000."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1000, 512))  # a CNN layer
    y = x[:, :50] @ rng.standard_normal((50, 50)) + 4.0 * rng.standard_normal((1000, 50))
    before = load()
    start = time.perf_counter()
    c = linear_cka(x, y, n_permutations=1000, seed=0)
    t_cka = time.perf_counter() - start
    start = time.perf_counter()
    perm_rng = np.random.default_rng(0)
    baseline = [cka_recomputed(x, y[perm_rng.permutation(1000)]) for _ in range(args.cka_perms)]
    t_base = (time.perf_counter() - start) * 1000 / args.cka_perms
    same = np.allclose(baseline, c.null[: args.cka_perms], atol=1e-9)
    print(
        f"CKA (unbiased) n=1000, 512-d vs 50-d, 1000 permutations: {t_cka:.2f} s (CKA "
        f"{c.cka:.4f}, p {c.p_value:.4f}); recomputing each permutation {t_base:.1f} s "
        f"(extrapolated from {args.cka_perms}; same null values: {same}), speed-up "
        f"x{t_base / t_cka:.1f}; load {before} -> {load()}"
    )
    before = load()
    start = time.perf_counter()
    m = mutual_knn(x, y, k=10, n_permutations=1000, seed=0)
    print(
        f"mutual k-NN (k=10) n=1000, 1000 permutations: {time.perf_counter() - start:.2f} s "
        f"(alignment {m.alignment:.4f}, p {m.p_value:.4f}); load {before} -> {load()}"
    )

    # Noisier targets than CKA's, so that some pairs fail (accuracy about 0.9).
    xr = x[:, :50]
    yr = xr @ rng.standard_normal((50, 50)) + 25.0 * rng.standard_normal((1000, 50))
    before = load()
    start = time.perf_counter()
    reg = regression_two_vs_two(xr, yr)
    t_fast = time.perf_counter() - start
    lams = penalty_grid(xr, DEFAULT_PENALTIES)
    # Pairs the fast path scores both ways, when there are such, then others.
    wrong = np.argwhere(np.triu(~reg.correct, 1))
    pairs = [tuple(int(v) for v in wrong[0])] if len(wrong) else []
    pairs = (pairs + [(3, 17), (250, 998)])[: args.ridge_pairs]
    start = time.perf_counter()
    loop = [ridge_pair(xr, yr, i, j, lams) for i, j in pairs]
    t_loop = (time.perf_counter() - start) / len(pairs) * reg.n_pairs
    agree = all(loop[n] == reg.correct[i, j] for n, (i, j) in enumerate(pairs))
    print(
        f"regression 2 vs 2 n=1000 (50-d -> 50-d, {len(lams)} penalties, inner leave-one-out): "
        f"{t_fast:.1f} s (accuracy {reg.accuracy:.4f}); refitting per pair {t_loop / 3600:.0f} h "
        f"(extrapolated from {len(pairs)} pairs; same decisions: {agree}), speed-up "
        f"x{t_loop / t_fast:.0f}; load {before} -> {load()}"
    )
    regression_paths()


def regression_paths(ref_n: int = 400) -> None:
    """Regression 2 vs 2: the compiled inner cross-validation against the numpy path it
    replaced (the reference, run by raising COMPILED_FROM), both whole statistics in this
    process at ``ref_n`` concepts, then the compiled path alone at n = 1000 (50-d -> 50-d,
    7 penalties)."""
    from semwh.analyze import regression

    rng = np.random.default_rng(6)
    x = rng.standard_normal((1000, 50))
    y = x @ rng.standard_normal((50, 50)) + 25.0 * rng.standard_normal((1000, 50))
    start = time.perf_counter()
    regression_two_vs_two(x[: regression.COMPILED_FROM], y[: regression.COMPILED_FROM])
    t_load = time.perf_counter() - start
    times, results = [], []
    before = load()
    for compiled_from in (regression.COMPILED_FROM, 10**9):  # compiled, then numpy
        saved, regression.COMPILED_FROM = regression.COMPILED_FROM, compiled_from
        start = time.perf_counter()
        try:
            results.append(regression_two_vs_two(x[:ref_n], y[:ref_n]))
        finally:
            regression.COMPILED_FROM = saved
        times.append(time.perf_counter() - start)
    fast, ref = results
    same = (
        np.array_equal(fast.correct, ref.correct)
        and np.array_equal(fast.chosen, ref.chosen)
        and fast.accuracy == ref.accuracy
    )
    print(
        f"regression 2 vs 2 n={ref_n} (50-d -> 50-d, 7 penalties): compiled {times[0]:.2f} s, "
        f"numpy reference {times[1]:.2f} s, ratio x{times[1] / times[0]:.1f} (same decisions, "
        f"penalties and accuracy: {same}); first call, loading the kernel {t_load:.2f} s; "
        f"load {before} -> {load()}"
    )
    # The kernel alone: one penalty's inner errors of every pair, numpy path vs compiled.
    hat = regression._Smoother(x[:ref_n], (1.0,), [""] * ref_n, "A").hats[0]
    e = y[:ref_n] - hat @ y[:ref_n]
    gram = e @ e.T
    before = load()
    kernel = []
    for inner_cv in (regression._inner_cv_numpy, regression._inner_cv):
        start = time.perf_counter()
        kernel.append(inner_cv(hat, gram))
        times.append(time.perf_counter() - start)
    print(
        f"  its inner cross-validation alone (one penalty): numpy {times[2]:.2f} s, compiled "
        f"{times[3]:.3f} s, ratio x{times[2] / times[3]:.0f} (same bits: "
        f"{np.array_equal(*kernel)}); load {before} -> {load()}"
    )
    before = load()
    start = time.perf_counter()
    reg = regression_two_vs_two(x, y)
    print(
        f"regression 2 vs 2 n=1000 (50-d -> 50-d, 7 penalties), compiled: "
        f"{time.perf_counter() - start:.1f} s (accuracy {reg.accuracy:.4f}); target <= 30 s; "
        f"load {before} -> {load()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop-pairs", type=int, default=3000)
    parser.add_argument("--rerank-perms", type=int, default=50)
    parser.add_argument(
        "--perms-2v2", type=int, default=1000, help="2 vs 2 permutations run (time scaled to 1000)"
    )
    parser.add_argument(
        "--full-rank-perms",
        type=int,
        default=100,
        help="2 vs 2 permutations for 2000-d spaces (full rank; time scaled to 1000; 0 skips)",
    )
    parser.add_argument("--cka-perms", type=int, default=20, help="baseline CKA permutations")
    parser.add_argument("--ridge-pairs", type=int, default=2, help="baseline regression pairs")
    parser.add_argument("--measures-only", action="store_true", help="only CKA, k-NN, ridge")
    parser.add_argument(
        "--kernels-only", action="store_true", help="only compiled kernels vs numpy reference"
    )
    parser.add_argument("--kernel-perms", type=int, default=1000, help="compiled 2 vs 2, low rank")
    parser.add_argument("--reference-perms", type=int, default=100, help="numpy 2 vs 2, low rank")
    parser.add_argument("--full-rank-kernel-perms", type=int, default=100)
    parser.add_argument("--full-rank-reference-perms", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.kernels_only:
        kernels(args)
        print(f"load average {load()} at end")
        return
    if args.measures_only:
        measures(args)
        print(f"load average {load()} at end")
        return

    a, b = spaces(300, 0)
    start = time.perf_counter()
    fast = two_vs_two(a, b)
    t_fast = time.perf_counter() - start
    iu = np.triu_indices(300, 1)
    pick = np.random.default_rng(1).choice(iu[0].size, size=args.loop_pairs, replace=False)
    start = time.perf_counter()
    loop_correct = loop_pairs(a, b, np.stack([iu[0][pick], iu[1][pick]], axis=1))
    t_loop = (time.perf_counter() - start) * iu[0].size / args.loop_pairs
    pairs = two_vs_two(a, b, return_pairs=True).pair_correct
    assert pairs is not None and pairs.sum() == fast.n_correct
    agree = loop_correct == pairs[iu[0][pick], iu[1][pick]].sum()
    print(
        f"2v2 n=300: fast {t_fast:.3f} s, reference loop {t_loop:.1f} s (extrapolated from "
        f"{args.loop_pairs} of {iu[0].size} pairs), speed-up x{t_loop / t_fast:.0f}; "
        f"same decisions on the subsample: {agree}"
    )

    a, b = spaces(1000, 2)
    for d, perms in ((50, args.perms_2v2), (2000, args.full_rank_perms)):
        if perms <= 0:
            continue
        sa, sb = (a, b) if d == 50 else spaces(1000, 3, d)
        before = load()
        start = time.perf_counter()
        result = two_vs_two(sa, sb, n_permutations=perms, seed=0)
        t_perm = (time.perf_counter() - start) * 1000 / perms
        print(
            f"2v2 n=1000 ({d}-d vectors), 1000 permutations: {t_perm:.1f} s (extrapolated from "
            f"{perms}; accuracy {result.accuracy:.4f}, p {result.p_value:.4f}); target <= 60 s; "
            f"load {before} -> {load()}"
        )

    before = load()
    start = time.perf_counter()
    r = rsa(a, b, n_permutations=1000, seed=0)
    t_rsa = time.perf_counter() - start
    iu = np.triu_indices(1000, 1)
    u = a[iu]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(args.rerank_perms):
        p = rng.permutation(1000)
        stats.spearmanr(u, b[np.ix_(p, p)][iu])
    t_rerank = (time.perf_counter() - start) * 1000 / args.rerank_perms
    print(
        f"RSA Mantel n=1000, 1000 permutations: {t_rsa:.2f} s (rho {r.rho:.4f}, p "
        f"{r.p_value:.4f}); target <= 5 s; re-ranking every permutation {t_rerank:.1f} s "
        f"(extrapolated from {args.rerank_perms}), speed-up x{t_rerank / t_rsa:.1f}; "
        f"load {before} -> {load()}"
    )
    measures(args)
    kernels(args)
    print(f"load average {load()} at end")


if __name__ == "__main__":
    main()
