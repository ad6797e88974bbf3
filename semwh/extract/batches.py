"""The batch loop: decode in loader workers, forward on the device, pool in hooks.

``extract_batch`` is the per-batch unit (the Ray backend's actors call it on their batches);
``iter_shard`` runs it over one shard's images with a DataLoader and keeps the pooled
results on the device until the shard ends, so the loop never waits for a device-to-host copy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from semwh.errors import ConfigError
from semwh.extract.hooks import Pooling, PoolingHooks
from semwh.extract.layouts import PROBE_BATCH, Layout
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
        layouts: Layer -> layout of its output (None until :func:`probe_shapes` resolves
            them; until then a forward pass records shapes only).
        n_classes: Width of the logits (None: the model has no classifier), from the probe.
    """

    module: nn.Module
    layers: list[str]
    pooling: Pooling
    preprocessing: Preprocessing
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    decoder: str = "pil"
    layouts: dict[str, Layout] | None = None
    n_classes: int | None = None
    hooks: PoolingHooks = field(init=False)

    def __post_init__(self) -> None:
        self.module = self.module.eval().to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.hooks = PoolingHooks(self.module, self.layers, self.pooling, self.layouts)

    def set_layouts(self, layouts: dict[str, Layout]) -> None:
        self.layouts = dict(layouts)
        self.hooks.layouts = self.layouts

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def close(self) -> None:
        self.hooks.remove()


def model_logits(output: Any) -> torch.Tensor | None:
    """The class logits of a forward pass's output, or None when it has none.

    A tensor is the logits; an output object with ``logits`` (Hugging Face classifiers)
    gives them; a tuple or list gives its first element; an output object without logits
    (a Hugging Face base model, an image-text tower) has none.
    """
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def extract_batch(
    model: ProbedModel, batch: torch.Tensor
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Pooled activations of every probe layer and the logits for one uint8 batch.

    Args:
        model: The probed model.
        batch: B x 3 x H x W uint8 images (already resized and cropped), on any device.

    Returns:
        Layer -> B x d float32 tensor on the model's device, and B x classes float32 logits
        (None for a model without a classifier).
    """
    x = batch.to(model.device, non_blocking=True)
    x = model.preprocessing.normalize(x)
    if model.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.hooks.reset()
    with torch.inference_mode(), model.autocast():
        output = model.module(x)
    logits = model_logits(output)
    if logits is not None and logits.ndim != 2:
        logits = None
    return dict(model.hooks.outputs), None if logits is None else logits.float()


def probe_shapes(
    model: ProbedModel,
    resolve: Callable[[dict[str, tuple[int, ...]]], dict[str, Layout]] | None = None,
    *,
    drop_unused: bool = False,
) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Forward order of the probe layers and their output shapes, from a blank batch.

    The pass runs :data:`PROBE_BATCH` blank images and records shapes only. ``resolve``
    (e.g. :meth:`LoadedModel.layouts`) turns the shapes, batch axis included, into the
    layouts the model then pools by. Returned shapes leave out the batch axis (wherever the
    layout puts it; batch-first when no layout is known).

    ``drop_unused`` leaves out probe modules that never run (a model's default list may name
    one its forward pass skips, such as the pooled-embedding norm of a distilled ViT);
    otherwise such a module is an error.

    Raises:
        ConfigError: A probe module never runs; an ambiguous or contradicted layout.
    """
    crop = model.preprocessing.crop
    blank = torch.zeros(PROBE_BATCH, 3, crop, crop, dtype=torch.uint8)
    known = model.layouts
    model.hooks.layouts = None
    try:
        _, logits = extract_batch(model, blank)
    finally:
        model.hooks.layouts = known
    missing = [layer for layer in model.layers if layer not in model.hooks.shapes]
    if missing and drop_unused and len(missing) < len(model.layers):
        model.layers = [layer for layer in model.layers if layer not in missing]
        model.hooks.layers = list(model.layers)
    elif missing:
        raise ConfigError(
            f"modules {', '.join(missing)} never run in the forward pass (e.g. auxiliary "
            "heads run only in training); probe other modules"
        )
    model.n_classes = None if logits is None else int(logits.shape[1])
    raw = dict(model.hooks.shapes)
    if resolve is not None:
        model.set_layouts(resolve(raw))
    if model.layouts is not None:
        shapes = {layer: model.layouts[layer].stored_shape(raw[layer]) for layer in raw}
    else:
        shapes = {layer: shape[1:] for layer, shape in raw.items()}
    return list(model.hooks.order), shapes


@dataclass
class ShardOutput:
    """Pooled vectors and top-k predictions of one shard, on the host."""

    vectors: dict[str, np.ndarray]  # layer -> n x d float32
    top_index: np.ndarray  # n x k int64 (k = 0 for a model without a classifier)
    top_prob: np.ndarray  # n x k float32


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """The shard's loader over decoded images (PIL path) or file bytes (device decoding)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def iter_batches(
    model: ProbedModel, loader: DataLoader
) -> Iterator[tuple[int, dict[str, torch.Tensor], torch.Tensor | None]]:
    """(batch size, pooled, logits) for each batch of a loader."""
    for batch in loader:
        pooled, logits = extract_batch(model, batch)
        yield batch.shape[0], pooled, logits


def iter_device_decoded(
    model: ProbedModel, paths: Sequence[str | Path], batch_size: int, num_workers: int
) -> Iterator[tuple[int, dict[str, torch.Tensor], torch.Tensor | None]]:
    """(batch size, pooled, logits) per batch, JPEGs decoded on the model's device.

    The next batch is decoded while the current one runs (a side stream on CUDA).
    """
    from semwh.extract.decode import FileBytesDataset, collate_items, iter_decoded

    files = FileBytesDataset(paths, model.preprocessing)
    loader = make_loader(files, batch_size, num_workers, model.device, collate_items)
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
        images = ImageDataset(paths, model.preprocessing)
        loader = make_loader(images, batch_size, num_workers, model.device)
        batches = iter_batches(model, loader)
    pooled_parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in model.layers}
    index_parts: list[torch.Tensor] = []
    prob_parts: list[torch.Tensor] = []
    for n, pooled, logits in batches:
        for layer, tensor in pooled.items():
            pooled_parts[layer].append(tensor)
        index, prob = top_predictions(logits, n)
        index_parts.append(index)
        prob_parts.append(prob)
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


def top_predictions(logits: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k class indices and softmax probabilities (n x 0 without logits)."""
    if logits is None:
        return torch.zeros(n, 0, dtype=torch.int64), torch.zeros(n, 0, dtype=torch.float32)
    probs = torch.softmax(logits, dim=1)
    top = probs.topk(min(TOP_K, probs.shape[1]), dim=1)
    return top.indices, top.values
