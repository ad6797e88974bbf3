"""The batch loop: decode in loader workers, forward on the device, pool in hooks.

``extract_batch`` is the per-batch unit (a future Ray engine maps it over batches);
``iter_shard`` runs it over one shard's images with a DataLoader and keeps the pooled
results on the device until the shard ends, so the loop never waits for a device-to-host copy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from semwh.errors import ConfigError
from semwh.extract.hooks import Pooling, PoolingHooks
from semwh.extract.preprocess import Preprocessing

TOP_K = 5
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ImageDataset(Dataset):
    """Image files decoded, resized and cropped to uint8 tensors (runs in loader workers)."""

    def __init__(self, paths: Sequence[str | Path], preprocessing: Preprocessing) -> None:
        self.paths = list(paths)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.preprocessing.load(self.paths[index])


def resolve_device(device: str | None) -> torch.device:
    """``cuda`` when available unless told otherwise."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} (e.g. cpu, cuda, cuda:1)") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 on the CPU, bf16 on GPUs that support it (fp16 otherwise) unless told."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r} (choose {', '.join(PRECISIONS)})")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def default_num_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    return min(8, max(0, cpus - 1)) if device.type == "cuda" or cpus > 2 else 0


@dataclass
class ProbedModel:
    """A model on its device with pooling hooks on the probe layers.

    Attributes:
        module: The network (eval mode, on ``device``).
        layers: Probe layers (module paths).
        pooling: The pooling rule of the hooks.
        preprocessing: Normalisation applied on the device.
        device: Where batches run.
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        channels_last: Whether inputs and weights use the channels-last memory format.
        decoder: ``pil`` (loader workers decode) or ``jpeg`` (workers read file bytes, the
            device decodes batches: :mod:`semwh.extract.decode`).
    """

    module: nn.Module
    layers: list[str]
    pooling: Pooling
    preprocessing: Preprocessing
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    decoder: str = "pil"
    hooks: PoolingHooks = field(init=False)

    def __post_init__(self) -> None:
        self.module = self.module.eval().to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.hooks = PoolingHooks(self.module, self.layers, self.pooling)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def close(self) -> None:
        self.hooks.remove()


def extract_batch(
    model: ProbedModel, batch: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pooled activations of every probe layer and the logits for one uint8 batch.

    Args:
        model: The probed model.
        batch: B x 3 x H x W uint8 images (already resized and cropped), on any device.

    Returns:
        Layer -> B x d float32 tensor on the model's device, and B x classes float32 logits.
    """
    x = batch.to(model.device, non_blocking=True)
    x = model.preprocessing.normalize(x)
    if model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.hooks.reset()
    with torch.inference_mode(), model.autocast():
        logits = model.module(x)
    if not isinstance(logits, torch.Tensor):
        logits = logits[0]
    return dict(model.hooks.outputs), logits.float()


def probe_shapes(model: ProbedModel) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Forward order of the probe layers and their output shapes, from one blank image."""
    blank = torch.zeros(1, 3, model.preprocessing.crop, model.preprocessing.crop, dtype=torch.uint8)
    extract_batch(model, blank)
    missing = [layer for layer in model.layers if layer not in model.hooks.outputs]
    if missing:
        raise ConfigError(
            f"modules {', '.join(missing)} never run in the forward pass (e.g. auxiliary "
            "heads run only in training); probe other modules"
        )
    return list(model.hooks.order), dict(model.hooks.shapes)


@dataclass
class ShardOutput:
    """Pooled vectors and top-k predictions of one shard, on the host."""

    vectors: dict[str, np.ndarray]  # layer -> n x d float32
    top_index: np.ndarray  # n x k int64
    top_prob: np.ndarray  # n x k float32


def make_loader(
    paths: Sequence[str | Path],
    preprocessing: Preprocessing,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader:
    return DataLoader(
        ImageDataset(paths, preprocessing),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def iter_batches(
    model: ProbedModel, loader: DataLoader
) -> Iterator[tuple[int, dict[str, torch.Tensor], torch.Tensor]]:
    """(batch size, pooled, logits) for each batch of a loader."""
    for batch in loader:
        pooled, logits = extract_batch(model, batch)
        yield batch.shape[0], pooled, logits


def iter_device_decoded(
    model: ProbedModel, paths: Sequence[str | Path], batch_size: int, num_workers: int
) -> Iterator[tuple[int, dict[str, torch.Tensor], torch.Tensor]]:
    """(batch size, pooled, logits) per batch, JPEGs decoded on the model's device.

    The next batch is decoded while the current one runs (a side stream on CUDA).
    """
    from semwh.extract.decode import iter_decoded, make_bytes_loader

    loader = make_bytes_loader(paths, model.preprocessing, batch_size, num_workers, model.device)
    for batch in iter_decoded(loader, model.preprocessing, model.device, paths):
        pooled, logits = extract_batch(model, batch)
        yield batch.shape[0], pooled, logits


def run_shard(
    model: ProbedModel,
    paths: Sequence[str | Path],
    *,
    batch_size: int,
    num_workers: int,
    on_batch: Callable[[int], None] | None = None,
) -> ShardOutput:
    """Extract one shard: batches stay on the device until the shard is complete."""
    if model.decoder == "jpeg":
        batches = iter_device_decoded(model, paths, batch_size, num_workers)
    else:
        loader = make_loader(paths, model.preprocessing, batch_size, num_workers, model.device)
        batches = iter_batches(model, loader)
    pooled_parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in model.layers}
    index_parts: list[torch.Tensor] = []
    prob_parts: list[torch.Tensor] = []
    for n, pooled, logits in batches:
        for layer, tensor in pooled.items():
            pooled_parts[layer].append(tensor)
        probs = torch.softmax(logits, dim=1)
        top = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
        index_parts.append(top.indices)
        prob_parts.append(top.values)
        if on_batch is not None:
            on_batch(n)
    vectors = {
        layer: torch.cat(parts).cpu().numpy().astype(np.float32, copy=False)
        for layer, parts in pooled_parts.items()
    }
    return ShardOutput(
        vectors=vectors,
        top_index=torch.cat(index_parts).cpu().numpy().astype(np.int64),
        top_prob=torch.cat(prob_parts).cpu().numpy().astype(np.float32),
    )
