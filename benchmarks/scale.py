"""Scale and device benchmark (run: .venv/bin/python benchmarks/scale.py).

One script for the CPU here and a CUDA device when there is one. It prints:

  * identity at n = 2,000: the single 2 vs 2 of the streaming kernel (inputs read a block of
    rows at a time) against the kernel that holds centred copies of both matrices (the
    in-memory baseline, same process), and RSA from memory against RSA from memmap files;
  * single 2 vs 2 and single RSA (Spearman) at --n-large concepts (default 20,000): each in a
    child process, with the time of the similarity matrices, of the test and the child's
    peak RSS (inputs in memory, or with --stream in memmap files under --tmp);
  * 2 vs 2 and RSA at n = 1,000 with 1,000 permutations (on the CPU from --cpu-perms
    permutations, extrapolated);
  * on CUDA: the same tests on the device (targets: 2 vs 2 with 1,000 permutations at
    n = 1,000 <= 2 s, a single 2 vs 2 at n = 20,000 <= 1 s), and resnet50 extraction (random
    weights, bf16, channels_last, batch 256): plain forward from decoded tensors, pooled
    extraction from decoded tensors (target >= 0.9 x plain) and from JPEG files decoded on
    the device (target >= 0.8 x plain).

Synthetic spaces: layer-like vectors of 2,048 dimensions and word-like vectors of 300 that
share part of their structure; Pearson similarity matrices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.analyze.two_vs_two_margins import BlockMargins

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "datasets" / "imagenet-200"


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = "no CUDA device"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{model}, {os.cpu_count()} CPUs visible, {gpu}, load {load()} at start"


def vectors(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer-like (n x 2048) and word-like (n x 300) vectors sharing 300 directions."""
    rng = np.random.default_rng(seed)
    layer = rng.standard_normal((n, 2048))
    words = layer[:, :300] + 3.0 * rng.standard_normal((n, 300))
    return layer, words


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def identity(n: int) -> None:
    layer, words = vectors(n, 1)
    a, b = similarity_matrix(layer), similarity_matrix(words)
    result, streamed = timed(two_vs_two, a, b)

    def in_memory() -> int:
        kernel = BlockMargins(a, "pearson", "numpy", "cpu")
        kernel.set_b(b)
        with np.errstate(invalid="ignore", divide="ignore"):
            return kernel.count_correct(1e-10, 512 * 2**20)

    count, baseline = timed(in_memory)
    print(
        f"2 vs 2 n={n}: streaming {streamed:.2f} s, in-memory kernel {baseline:.2f} s "
        f"(x{baseline / streamed:.2f}); correct pairs {result.n_correct} vs {count}: "
        f"{'identical' if result.n_correct == count else 'DIFFERENT'} [load {load()}]",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = [np.memmap(Path(tmp) / f"{k}.f64", np.float64, "w+", shape=(n, n)) for k in "ab"]
        files[0][:], files[1][:] = a, b
        memory, t_memory = timed(rsa, a, b)
        from_files, t_files = timed(rsa, *files)
        print(
            f"RSA n={n}: from memory {t_memory:.2f} s, from memmap files {t_files:.2f} s; "
            f"rho {memory.rho!r} vs {from_files.rho!r}: "
            f"{'identical' if memory.rho == from_files.rho else 'DIFFERENT'} [load {load()}]",
            flush=True,
        )


def child(test: str, n: int, device: str, stream: bool, tmp: str) -> None:
    """One single test at n concepts; prints a JSON line (runs in its own process)."""
    layer, words = vectors(n, 2)
    outs = [None, None]
    if stream:
        os.makedirs(tmp, exist_ok=True)
        outs = [
            np.memmap(Path(tmp) / f"bench-{k}.f64", np.float64, "w+", shape=(n, n)) for k in "ab"
        ]
    start = time.perf_counter()
    a = similarity_matrix(layer, out=outs[0])
    b = similarity_matrix(words, out=outs[1])
    sims = time.perf_counter() - start
    del layer, words
    backend = "torch" if device != "cpu" else "numpy"
    if test == "2v2":
        result, seconds = timed(two_vs_two, a, b, backend=backend, device=device)
        value = result.accuracy
    else:
        result, seconds = timed(rsa, a, b)
        value = result.rho
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for path in Path(tmp).glob("bench-*.f64") if stream else []:
        path.unlink()
    print(json.dumps({"sims": sims, "seconds": seconds, "value": value, "peak": peak}))


def single(test: str, n: int, device: str, stream: bool, tmp: str) -> None:
    before = load()
    args = [sys.executable, __file__, "--child", test, "--n-large", str(n), "--device", device]
    if stream:
        args += ["--stream", "--tmp", tmp]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{test} n={n} on {device}: failed\n{proc.stderr[-2000:]}", flush=True)
        return
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    where = "memmap files" if stream else "memory"
    print(
        f"single {test} n={n} on {device} (inputs in {where}): test {out['seconds']:.1f} s, "
        f"similarity matrices {out['sims']:.1f} s, peak RSS {out['peak'] / 2**30:.2f} GiB, "
        f"statistic {out['value']:.6f} [load {before} -> {load()}]",
        flush=True,
    )


def permutations(n: int, perms: int, run: int, device: str) -> None:
    layer, words = vectors(n, 3)
    a, b = similarity_matrix(layer), similarity_matrix(words)
    backend = "torch" if device != "cpu" else "numpy"
    run = min(run, perms)
    before = load()
    kw = dict(seed=1, backend=backend, device=device)
    # Set-up (checks, observed statistic, per-pair terms) once, permutations scaled up.
    _, s2 = timed(two_vs_two, a, b, **kw)
    _, t2 = timed(two_vs_two, a, b, n_permutations=run, **kw)
    _, sr = timed(rsa, a, b, **kw)
    _, tr = timed(rsa, a, b, n_permutations=run, **kw)
    scale = perms / run
    note = "" if run == perms else f" (from {run}, extrapolated)"
    print(
        f"n={n}, {perms} permutations on {device}{note}: "
        f"2 vs 2 {s2 + (t2 - s2) * scale:.1f} s, RSA {sr + (tr - sr) * scale:.1f} s "
        f"[load {before} -> {load()}]",
        flush=True,
    )


def extraction(n_images: int, batch: int, workers: int) -> None:
    """resnet50 (random weights) on CUDA: plain forward, pooled extraction, JPEG files."""
    import torch

    from semwh.extract.batches import ProbedModel, extract_batch, run_shard
    from semwh.extract.hooks import parse_pooling
    from semwh.extract.networks import load_model, resolve_layers

    device = torch.device("cuda")
    loaded = load_model("resnet50", weights="none")
    pre = loaded.preprocessing
    files = sorted(SAMPLES.glob("*.jpg"))
    paths = [files[i % len(files)] for i in range(n_images)]
    decoded = torch.stack([pre.load(p) for p in paths[:batch]]).to(device)
    module = loaded.module.eval().to(device).to(memory_format=torch.channels_last)
    steps = max(1, n_images // batch)

    def plain() -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(steps):
                x = pre.normalize(decoded).contiguous(memory_format=torch.channels_last)
                module(x)
        torch.cuda.synchronize()

    probed = ProbedModel(
        loaded.module,
        resolve_layers(loaded, None),
        parse_pooling("avg"),
        pre,
        device,
        "bf16",
        True,
        "jpeg",
    )

    def pooled() -> None:
        for _ in range(steps):
            extract_batch(probed, decoded)
        torch.cuda.synchronize()

    def from_files() -> None:
        run_shard(probed, paths, batch_size=batch, num_workers=workers)
        torch.cuda.synchronize()

    plain()  # warm-up (cuDNN autotuning, allocator)
    pooled()
    _, t_plain = timed(plain)
    _, t_pooled = timed(pooled)
    _, t_files = timed(from_files)
    images = steps * batch
    rate_plain, rate_pooled = images / t_plain, images / t_pooled
    rate_files = len(paths) / t_files
    print(
        f"resnet50 bf16 channels_last batch {batch}: plain forward {rate_plain:.0f} img/s; "
        f"pooled extraction ({len(probed.layers)} layers) {rate_pooled:.0f} img/s "
        f"(x{rate_pooled / rate_plain:.2f}, target >= 0.9); from JPEG files decoded on the "
        f"device ({workers} workers) {rate_files:.0f} img/s (x{rate_files / rate_plain:.2f}, "
        "target >= 0.8)",
        flush=True,
    )
    probed.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-large", type=int, default=20_000, help="0 skips the large tests")
    parser.add_argument("--identity-n", type=int, default=2000)
    parser.add_argument("--perm-n", type=int, default=1000)
    parser.add_argument("--perms", type=int, default=1000)
    parser.add_argument("--cpu-perms", type=int, default=50, help="CPU: run this many")
    parser.add_argument("--stream", action="store_true", help="large inputs in memmap files")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--images", type=int, default=4096, help="CUDA extraction images")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["2v2", "rsa"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n_large, args.device, args.stream, args.tmp)
        return
    print(machine(), flush=True)
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        pass
    if args.identity_n:
        identity(args.identity_n)
    if args.perm_n:
        permutations(args.perm_n, args.perms, args.cpu_perms, "cpu")
        if cuda:
            permutations(args.perm_n, args.perms, args.perms, "cuda")
    if args.n_large:
        for test in ("2v2", "rsa"):
            single(test, args.n_large, "cpu", args.stream, args.tmp)
        if cuda:
            single("2v2", args.n_large, "cuda", args.stream, args.tmp)
    if cuda and args.images:
        extraction(args.images, args.batch, args.workers)
    elif not cuda:
        print("no CUDA device: GPU figures not measured", flush=True)


if __name__ == "__main__":
    main()
