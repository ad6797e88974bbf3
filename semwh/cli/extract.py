"""`semwh extract`: pooled activations of a vision model's layers for every image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from semwh.cli.printing import bars
from semwh.cli.state import console, err_console, state
from semwh.ray import extraction_backend

if TYPE_CHECKING:  # importing semwh.extract loads torch: keep `semwh --help` fast
    from semwh.extract import ExtractionPlan


def _print_plan(plan: ExtractionPlan) -> None:
    for line in plan.lines():
        err_console.print(line, highlight=False, markup=False)


def extract(
    ctx: typer.Context,
    model: str = typer.Argument(
        ...,
        help="torchvision:NAME (the default without a prefix; or efficientnet_lite0), "
        "timm:NAME[.TAG], hf:ID_OR_DIR[@REVISION], openclip:MODEL[@PRETRAINED], "
        "module:PKG.MOD:CALLABLE or an installed plugin's PREFIX:REF (`semwh models`).",
    ),
    weights: str = typer.Option(
        "default",
        "--weights",
        help="default (the source's trained weights), a torchvision member, or none (random).",
    ),
    weights_file: Path | None = typer.Option(
        None, "--weights-file", help="Local weights file (.pth or .safetensors; offline)."
    ),
    name: str | None = typer.Option(None, "--name", help="Registry model name."),
    layers: str | None = typer.Option(
        None,
        "--layers",
        help="Module paths (comma-separated), or 'all'. Default: block outputs in depth order "
        "(`semwh models MODEL` lists them).",
    ),
    pooling: str = typer.Option("avg", "--pooling", help="avg, flatten or srp:D for 4-D outputs."),
    token_pooling: str = typer.Option(
        "mean", "--token-pooling", help="mean (over patch tokens) or cls for token outputs."
    ),
    preprocessing: str | None = typer.Option(
        None,
        "--preprocessing",
        help="Preset (imagenet, clip, half) and/or key=value entries (resize=256,crop=224,"
        "interpolation=bicubic,mean=a/b/c,std=a/b/c); required for module: models.",
    ),
    layout: str | None = typer.Option(
        None,
        "--layout",
        help="Output layouts the source cannot tell: LAYER=LAYOUT entries (glob patterns) "
        "and/or a fallback (channels_first, channels_last, tokens[:P], sequence_first[:P]).",
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Images per forward pass."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Images per resumable shard."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, bf16 or fp16."),
    decoder: str = typer.Option(
        "auto",
        "--decoder",
        help="JPEG decoding: auto (on the GPU when the device is CUDA), pil (loader workers) "
        "or jpeg (torchvision.io.decode_jpeg on the device).",
    ),
    shard: str | None = typer.Option(None, "--shard", help="i/n: run every n-th shard from i."),
    num_workers: int | None = typer.Option(None, "--workers", help="Decoding workers."),
    seed: int = typer.Option(0, "--seed", help="Seed of random weights and srp projections."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; run nothing."),
    shard_pause: float = typer.Option(
        0.0, "--shard-pause", help="Sleep seconds after each registered shard (lets readers in)."
    ),
    backend: str = typer.Option(
        "local", "--backend", "--engine", help="local, or ray (the ray extra)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster (auto, HOST:6379); default: a small local Ray."
    ),
    gpus_per_actor: float = typer.Option(
        0.0, "--gpus-per-actor", help="GPUs per Ray model actor (0.5 shares a GPU; 0: CPU)."
    ),
    actors: int | None = typer.Option(None, "--actors", help="Ray model actors (default: auto)."),
) -> None:
    """Run a model over the warehouse's images; store pooled layers, predictions and spaces.

    Example: semwh extract timm:vit_small_patch16_224 --batch-size 128 --shard-size 500
    """
    wh = state(ctx).warehouse()
    run = extraction_backend(
        backend, ray_address=ray_address, gpus_per_actor=gpus_per_actor, actors=actors
    )
    from semwh.extract import ExtractionOptions  # loads torch: not at `semwh --help`

    options = ExtractionOptions(
        model,
        weights=weights,
        weights_file=weights_file,
        name=name,
        seed=seed,
        layers=layers,
        pooling=pooling,
        token_pooling=token_pooling,
        preprocessing=preprocessing,
        layouts=layout,
        batch_size=batch_size,
        shard_size=shard_size,
        device=device,
        precision=precision,
        decoder=decoder,
        shard=shard,
        num_workers=num_workers,
    )
    with bars() as progress:
        summary = run(
            wh,
            options,
            dry_run=dry_run,
            progress=progress,
            on_plan=_print_plan,
            shard_pause=shard_pause,
        )
    rate = f", {summary.images_per_s:.1f} images/s" if summary.images_per_s else ""
    console.print(
        f"{summary.model}: run {summary.run_id} {summary.status}; {summary.shards_done} shards "
        f"({summary.images} images) extracted, {summary.shards_skipped} already done{rate}; "
        f"{len(summary.spaces)} layer spaces",
        highlight=False,
    )
