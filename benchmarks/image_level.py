"""Image-level RSA and 2 vs 2 at THINGS scale (run: .venv/bin/python benchmarks/image_level.py).

Items are stimuli: ``--images`` images (default 20,000) of ``--concepts`` concepts (default
2,000, ten images each), ``--dim``-d vectors in both spaces sharing a concept structure plus
per-image noise. Each test runs in a child process of its own, so that its peak memory (the
child's maximum resident set) is its own, through the library path every command takes:
``plan_comparison`` at the image level (its plan printed first, as the command prints it),
then ``run_comparison`` with concept-block permutations.

The baseline, in the same run: the obviously-right per-pair loop (each pair's two
similarities from the vectors, then the statistic) timed on a random sample of pairs and
extrapolated to every pair and every permutation.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
from analysis import load, machine  # the same machine line as the kernel benchmarks


def spaces(n_images: int, n_concepts: int, dim: int, seed: int = 0):  # noqa: ANN201
    """Two image-level spaces of the same stimuli (SpaceVectors), rows sorted by stimulus."""
    from semwh.vectors import SpaceVectors

    rng = np.random.default_rng(seed)
    concepts = [f"c{i % n_concepts:05d}" for i in range(n_images)]
    codes = np.array([i % n_concepts for i in range(n_images)])
    structure = rng.standard_normal((n_concepts, dim))
    a = structure[codes] + rng.standard_normal((n_images, dim))
    b = structure[codes] @ rng.standard_normal((dim, dim)) + 2 * rng.standard_normal(
        (n_images, dim)
    )
    stimuli = [f"{c}_{i:06d}" for i, c in enumerate(concepts)]
    order = np.argsort(stimuli)
    ids = [stimuli[i] for i in order]
    item_concepts = tuple(concepts[i] for i in order)
    return tuple(
        SpaceVectors(
            name, ids, m[order], kind="external", level="image", item_concepts=item_concepts
        )
        for name, m in (("a", a), ("b", b))
    )


def child(test: str, args: argparse.Namespace, out: mp.Queue) -> None:
    from semwh.errors import ResourceError
    from semwh.runs.comparison import plan_comparison, plan_for, run_comparison
    from semwh.runs.levels import Items
    from semwh.runs.options import ComparisonOptions
    from semwh.runs.plan import check_analysis_plan

    a, b = spaces(args.images, args.concepts, args.dim)
    options = ComparisonOptions.make(test, permutations=args.permutations, seed=1)
    spec = plan_comparison(a, b, options, {"a": "x", "b": "y"}, items=Items("image"))
    plan = plan_for(spec, Path(args.tmp))
    try:
        check_analysis_plan(plan)  # what the command does: a plan that cannot fit is refused
    except ResourceError as exc:
        out.put((plan.lines(), None, 0, str(exc), None))
        return
    start = time.perf_counter()
    record = run_comparison(spec, Path(args.tmp) if plan.stream_inputs else None)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.put((plan.lines(), seconds, peak, record.statistic, record.p_value))


def naive_seconds_per_pair(test: str, args: argparse.Namespace, n_pairs: int = 20000) -> float:
    """The per-pair reference: Pearson similarities of each pair from the vectors, in
    Python; for 2 vs 2 the four similarities of a pair's two rows (one of n - 2 columns)."""
    a, b = spaces(args.images, args.concepts, args.dim)
    rng = np.random.default_rng(2)
    n = len(a.concept_ids)
    pairs = rng.integers(0, n, size=(n_pairs, 2))
    start = time.perf_counter()
    for i, j in pairs:
        for m in (a.matrix, b.matrix):
            x, y = m[i] - m[i].mean(), m[j] - m[j].mean()
            float(x @ y / np.sqrt((x @ x) * (y @ y)))
            if test == "2v2":
                for _ in range(2):  # the 2 vs 2 reads two more similarities a pair
                    float(x @ y / np.sqrt((x @ x) * (y @ y)))
    return (time.perf_counter() - start) / n_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--concepts", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--tests", default="rsa,2v2")
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    n = args.images
    pairs = n * (n - 1) // 2
    ctx = mp.get_context("spawn")
    for test in args.tests.split(","):
        queue: mp.Queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(test, args, queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"{test}: the child process failed (exit code {proc.exitcode})")
        lines, seconds, peak, statistic, p = queue.get()
        for line in lines:
            print(line)
        if seconds is None:
            print(f"{test}: refused by its plan, as the command would refuse it: {statistic}")
            continue
        naive = naive_seconds_per_pair(test, args) * pairs * (1 + args.permutations)
        print(
            f"{test}: {n} stimuli of {args.concepts} concepts, {args.permutations} concept-block "
            f"permutations: {seconds:.1f} s, peak memory {peak / 2**30:.2f} GiB "
            f"(statistic {statistic:.4f}, p {'-' if p is None else format(p, '.3g')}); "
            f"per-pair loop extrapolated "
            f"{naive:.0f} s, ratio {naive / seconds:.0f}x; load average {load()}"
        )


if __name__ == "__main__":
    main()
