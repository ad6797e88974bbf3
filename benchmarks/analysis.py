"""Timings of the analysis kernels (run: .venv/bin/python benchmarks/analysis.py).

Prints, in one run:
  * 2 vs 2 at n=300: fast path against the pair-by-pair reference loop (the loop runs over a
    random subsample of pairs and is extrapolated to all pairs);
  * 2 vs 2 at n=1000 with 1000 permutations (target <= 60 s on 2 cores), for spaces of
    50-d vectors (low-rank similarity matrices) and, with --full-rank-perms > 0, of 2000-d
    vectors (full rank, like wide CNN layers);
  * RSA (Spearman) Mantel test at n=1000 with 1000 permutations (target <= 5 s) against
    re-ranking every permutation (the re-ranking baseline runs a subsample of permutations
    and is extrapolated).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy import stats

from semwh.analyze import rsa, similarity_matrix, two_vs_two


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
    args = parser.parse_args()
    print(f"machine: {machine()}")

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
    print(f"load average {load()} at end")


if __name__ == "__main__":
    main()
