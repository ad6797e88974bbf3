"""Each measure through the CLI at n = 1000 concepts, as a lab runs it
(run: .venv/bin/python benchmarks/cli_n1000.py).

A warehouse in a temporary folder gets 1000 concepts and their spaces (64-d against 48-d,
low-rank similarity matrices; 2000-d against 2000-d, full rank; 50-d against 50-d for
regression 2 vs 2). Each command runs twice, with 1000 permutations and with 1 (the same
command, start-up, loading and the statistic included), and the line prints the difference:
the time of 999 permutations at the pace a lab sees, in the issue's terms. Regression 2 vs 2
runs without permutations; its line gives the whole command beside the interpreter's
start-up (``semwh --help``). ``SEMWH_KERNELS`` is passed on (default
``auto``: the compiled kernels at this size). Each line gives the 1-minute load average
before and after, since the 2 cores are shared.

Targets (2 idle cores): 2 vs 2 <= 20 s (low rank) and <= 45 s (full rank), RSA <= 1 s,
CKA <= 5 s, regression 2 vs 2 <= 30 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEMWH = str(Path(sys.executable).with_name("semwh"))


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def cli(root: Path, *args: str) -> float:
    """Seconds one `semwh` command takes (wall), failing loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.run(
        [SEMWH, "--warehouse", str(root), *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"semwh {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return seconds


def write_space(path: Path, ids: list[str], matrix: np.ndarray) -> Path:
    vectors = pa.array(list(matrix.astype(np.float32)), pa.list_(pa.float32()))
    pq.write_table(pa.table({"concept": ids, "vector": vectors}), path)
    return path


def build(root: Path, n: int) -> None:
    rng = np.random.default_rng(5)
    ids = [f"c{i:04d}" for i in range(n)]
    concepts = root.parent / "concepts.csv"
    concepts.write_text("concept\n" + "\n".join(ids) + "\n")
    x = rng.standard_normal((n, 64))
    y = x[:, :48] @ rng.standard_normal((48, 48)) + 2.0 * rng.standard_normal((n, 48))
    wide_x = rng.standard_normal((n, 2000))
    wide_y = wide_x + 2.0 * rng.standard_normal((n, 2000))
    reg_x = rng.standard_normal((n, 50))
    reg_y = reg_x @ rng.standard_normal((50, 50)) + rng.standard_normal((n, 50))
    cli(root, "init")
    cli(root, "ingest", "concepts", str(concepts))
    for name, matrix in (
        ("a64", x), ("b48", y), ("wa", wide_x), ("wb", wide_y), ("ra", reg_x), ("rb", reg_y)
    ):  # fmt: skip
        cli(root, "ingest", "space", name, str(write_space(root.parent / f"{name}.parquet",
                                                          ids, matrix)))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="concepts")
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--skip", nargs="*", default=[], help="measures to leave out")
    args = parser.parse_args()
    print(
        f"semwh CLI at n={args.n}, {args.permutations} permutations, SEMWH_KERNELS="
        f"{os.environ.get('SEMWH_KERNELS', 'auto')}, {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        start = time.perf_counter()
        build(root, args.n)
        print(f"warehouse built in {time.perf_counter() - start:.1f} s", flush=True)
        cases = [
            ("2 vs 2, 64-d vs 48-d (low rank)", "2v2", "a64", "b48"),
            ("2 vs 2, 2000-d (full rank)", "2v2", "wa", "wb"),
            ("RSA (Spearman)", "rsa", "a64", "b48"),
            ("linear CKA", "cka", "a64", "b48"),
        ]
        for label, command, a, b in cases:
            if command in args.skip or label in args.skip:
                continue
            before = load()
            # The first run also compiles the kernels on a new machine: warm them first.
            run = ("analyze", command, "--a", a, "--b", b, "--force", "--seed")
            cli(root, *run, "1", "-n", "1")
            one = cli(root, *run, "2", "-n", "1")
            full = cli(root, *run, "3", "-n", str(args.permutations))
            print(
                f"{label}: {full:.2f} s with {args.permutations} permutations, {one:.2f} s with 1;"
                f" difference {full - one:.2f} s; load {before} -> {load()}",
                flush=True,
            )
        if "reg2v2" not in args.skip:
            before = load()
            start_up = _help_seconds()
            whole = cli(root, "analyze", "reg2v2", "--a", "ra", "--b", "rb", "-n", "0")
            print(
                f"regression 2 vs 2, 50-d to 50-d, 7 penalties, no permutations: {whole:.2f} s "
                f"(interpreter start-up {start_up:.2f} s); load {before} -> {load()}",
                flush=True,
            )


def _help_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([SEMWH, "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
