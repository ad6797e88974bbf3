"""Extraction overhead: plain forward vs the pooled-extraction path, and end to end from JPEGs.

In one process on one device, for each model: images/s of the plain forward on decoded,
normalised tensors; images/s of ``extract_batch`` (normalisation on the device, pooling hooks
on the default probe layers) on the same decoded uint8 batch; their ratio; and images/s of a
whole shard from JPEG files (DataLoader decoding + extraction) from the sample image folder.

    .venv/bin/python benchmarks/extract.py --device cpu --batch-size 8 --batches 3
    .venv/bin/python benchmarks/extract.py --device cuda --batch-size 256 --precision bf16 \
        --channels-last --batches 20 --e2e-images 2048

Targets: CPU pooled extraction >= 0.85 x plain forward; GPU (bf16, batch 256, channels_last)
>= 0.9 x from decoded tensors and >= 0.6 x end to end.

Models are any ``semwh extract`` reference (``vit_b_16``, ``timm:vit_small_patch16_224``,
``hf:DIR``); all but efficientnet_lite0 use random weights, so nothing is downloaded. Layouts
are resolved by the probe forward pass as in a real extraction.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from semwh.extract.batches import (
    ProbedModel,
    extract_batch,
    probe_shapes,
    resolve_device,
    run_shard,
)
from semwh.extract.hooks import Pooling, PoolingHooks
from semwh.extract.networks import load_model

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "imagenet-200"
MODELS = (
    "vgg16",
    "resnet50",
    "inception_v3",
    "efficientnet_lite0",
    "vit_b_16",
    "timm:vit_small_patch16_224",
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn, n_images: int, batches: int, device: torch.device) -> float:
    fn()  # warm-up (cuDNN autotuning, allocator, oneDNN primitives)
    _sync(device)
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    _sync(device)
    return n_images * batches / (time.perf_counter() - start)


def bench_model(arch: str, args: argparse.Namespace, device: torch.device) -> dict:
    loaded = load_model(arch, weights="default" if arch == "efficientnet_lite0" else "none")
    crop = loaded.preprocessing.crop
    probed = ProbedModel(
        loaded.module,
        loaded.default_layers,
        Pooling(),
        loaded.preprocessing,
        device,
        args.precision,
        args.channels_last,
    )
    probe_shapes(probed, loaded.layouts)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(
        0, 256, (args.batch_size, 3, crop, crop), dtype=torch.uint8, generator=gen
    )
    batch = batch.to(device)
    x = loaded.preprocessing.normalize(batch)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def plain() -> None:
        with torch.inference_mode(), probed.autocast():
            probed.module(x)

    def pooled() -> None:
        extract_batch(probed, batch)

    # Alternate the two measurements so drifting machine load hits both alike.
    plain_rates, pooled_rates = [], []
    for _ in range(args.repeats):
        probed.hooks.remove()  # the plain forward runs without hooks
        plain_rates.append(_rate(plain, args.batch_size, args.batches, device))
        probed.hooks = PoolingHooks(probed.module, probed.layers, probed.pooling, probed.layouts)
        pooled_rates.append(_rate(pooled, args.batch_size, args.batches, device))
    plain_rate, pooled_rate = max(plain_rates), max(pooled_rates)

    e2e = None
    if args.e2e_images and SAMPLES.is_dir():
        files = sorted(SAMPLES.glob("*.jpg"))[: args.e2e_images]
        start = time.perf_counter()
        run_shard(probed, files, batch_size=args.batch_size, num_workers=args.workers)
        _sync(device)
        e2e = len(files) / (time.perf_counter() - start)
    probed.close()
    return {
        "model": arch,
        "layers": len(loaded.default_layers),
        "plain": plain_rate,
        "pooled": pooled_rate,
        "ratio": pooled_rate / plain_rate,
        "e2e": e2e,
        "e2e_ratio": None if e2e is None else e2e / plain_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--e2e-images", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, batch {args.batch_size}, {args.precision}, "
        f"channels_last={args.channels_last}, {args.batches} batches x {args.repeats} repeats"
    )
    print(
        "| model | probe layers | plain img/s | extraction img/s | ratio | e2e img/s | e2e ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for arch in args.models.split(","):
        r = bench_model(arch, args, device)
        e2e = "-" if r["e2e"] is None else f"{r['e2e']:.1f}"
        e2e_ratio = "-" if r["e2e_ratio"] is None else f"{r['e2e_ratio']:.2f}"
        print(
            f"| {r['model']} | {r['layers']} | {r['plain']:.1f} | {r['pooled']:.1f} | "
            f"{r['ratio']:.2f} | {e2e} | {e2e_ratio} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
