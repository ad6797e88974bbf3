"""Extraction plans: per-layer output sizes, disk and memory needs, and whether they fit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from semwh.errors import ResourceError
from semwh.extract.batches import ProbedModel, probe_shapes
from semwh.extract.hooks import Pooling
from semwh.extract.layouts import Layout
from semwh.extract.networks import LoadedModel
from semwh.resources import available_ram, human_bytes
from semwh.warehouse.layout import Warehouse


@dataclass(frozen=True)
class LayerPlan:
    """What one probe layer will store."""

    module: str
    depth_index: int
    output_shape: tuple[int, ...]
    pooling: str
    dim: int
    layout: str = "channels_first"

    @property
    def bytes_per_image(self) -> int:
        return self.dim * 4


@dataclass(frozen=True)
class ExtractionPlan:
    """Sizes of an extraction before it runs, and whether it fits.

    Attributes:
        model: Registry model name.
        layers: Per-layer plan, forward order.
        n_images: Images in the warehouse's image set.
        n_todo: Images still to extract (shards not yet registered, this slice).
        disk_needed: Bytes of Parquet still to write (float32 vectors + concept means).
        disk_free: Free bytes where the vectors go (None on an object store: no limit known).
        ram_needed: Estimated peak host memory in bytes.
        ram_free: Available host memory in bytes (None where unknown).
        n_classes: Width of the model's logits (None: no classifier, no predictions).
    """

    model: str
    layers: list[LayerPlan]
    n_images: int
    n_todo: int
    n_shards: int
    shard_size: int
    batch_size: int
    device: str
    precision: str
    disk_needed: int
    disk_free: int | None
    ram_needed: int
    ram_free: int | None
    n_classes: int | None = 1000

    @property
    def bytes_per_image(self) -> int:
        return sum(layer.bytes_per_image for layer in self.layers)

    @property
    def fits(self) -> bool:
        ram_ok = self.ram_free is None or self.ram_needed <= self.ram_free
        disk_ok = self.disk_free is None or self.disk_needed <= self.disk_free
        return disk_ok and ram_ok

    def lines(self) -> list[str]:
        """A human-readable plan, one line per layer then the totals."""
        out = [
            f"{self.model}: {len(self.layers)} layers, {self.n_images} images "
            f"({self.n_todo} to do) in {self.n_shards} shards of {self.shard_size}, "
            f"batch {self.batch_size} on {self.device} ({self.precision})"
        ]
        for layer in self.layers:
            shape = "x".join(str(s) for s in layer.output_shape)
            out.append(
                f"  {layer.depth_index:>3} {layer.module:<16} {shape:>14} {layer.layout:<15} "
                f"{layer.pooling:<10} "
                f"dim {layer.dim:>7}  {human_bytes(layer.bytes_per_image)}/image x "
                f"{self.n_todo} = {human_bytes(layer.bytes_per_image * self.n_todo)}"
            )
        ram_free = "unknown" if self.ram_free is None else human_bytes(self.ram_free)
        disk_free = "object store" if self.disk_free is None else human_bytes(self.disk_free)
        out.append(
            f"  disk: {human_bytes(self.disk_needed)} needed, {disk_free} free;"
            f" RAM: {human_bytes(self.ram_needed)} needed, {ram_free} available"
        )
        return out


def _estimate_ram(
    n_parameters: int,
    crop: int,
    shapes: dict[str, tuple[int, ...]],
    bytes_per_image: int,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    device: str,
) -> int:
    params = n_parameters * 4
    inputs = batch_size * 3 * crop * crop * (4 + 1) * (max(num_workers, 1) + 2)
    # Two shards of pooled vectors on the host: one being written while the next fills.
    shards = 2 * shard_size * bytes_per_image
    activations = 0
    if device == "cpu":
        largest = max((math.prod(s) for s in shapes.values()), default=0)
        activations = 4 * batch_size * largest * 4
    return params + inputs + shards + activations


def plan_extraction(
    wh: Warehouse,
    probed: ProbedModel,
    loaded: LoadedModel,
    *,
    n_images: int,
    n_todo: int,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    n_concepts: int,
    probed_shapes: tuple[list[str], dict[str, tuple[int, ...]]] | None = None,
) -> ExtractionPlan:
    """Per-layer output shapes and sizes (one blank forward pass) and free disk and RAM."""
    order, shapes = probed_shapes or probe_shapes(probed, loaded.layouts)
    assert probed.layouts is not None
    return plan_from_shapes(
        wh,
        model=loaded.name,
        n_parameters=loaded.n_parameters,
        crop=loaded.preprocessing.crop,
        order=order,
        shapes=shapes,
        layouts=probed.layouts,
        pooling=probed.pooling,
        device=probed.device,
        precision=probed.precision,
        n_images=n_images,
        n_todo=n_todo,
        shard_size=shard_size,
        batch_size=batch_size,
        num_workers=num_workers,
        n_concepts=n_concepts,
        n_classes=probed.n_classes,
    )


def plan_from_shapes(
    wh: Warehouse,
    *,
    model: str,
    n_parameters: int,
    crop: int,
    order: list[str],
    shapes: dict[str, tuple[int, ...]],
    layouts: dict[str, Layout],
    pooling: Pooling,
    device: torch.device,
    precision: str,
    n_images: int,
    n_todo: int,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    n_concepts: int,
    n_classes: int | None = None,
) -> ExtractionPlan:
    """The plan of probe layers with known output shapes (forward order) and free disk and RAM.

    Args:
        model: Registry model name.
        n_parameters: The model's parameter count.
        crop: Input size of the model (pixels).
        order: Probe layers, forward order.
        shapes: Output shape of each layer, batch excluded.
        layouts: Layout of each layer's output.
        pooling: The pooling rule.
        device: Where batches run.
        precision: ``fp32``, ``bf16`` or ``fp16``.
    """
    layers = [
        LayerPlan(
            module=module,
            depth_index=i,
            output_shape=shapes[module],
            pooling=pooling.label(layouts[module]),
            dim=pooling.dim(layouts[module], shapes[module]),
            layout=str(layouts[module]),
        )
        for i, module in enumerate(order)
    ]
    bytes_per_image = sum(layer.bytes_per_image for layer in layers)
    disk_needed = bytes_per_image * (n_todo + n_concepts)
    wh.root.mkdir(parents=True, exist_ok=True)
    return ExtractionPlan(
        model=model,
        layers=layers,
        n_images=n_images,
        n_todo=n_todo,
        n_shards=max(1, math.ceil(n_images / shard_size)),
        shard_size=shard_size,
        batch_size=batch_size,
        device=str(device),
        precision=precision,
        disk_needed=disk_needed,
        disk_free=wh.vectors.free_bytes(),
        ram_needed=_estimate_ram(
            n_parameters,
            crop,
            shapes,
            bytes_per_image,
            shard_size,
            batch_size,
            num_workers,
            device.type,
        ),
        ram_free=available_ram(),
        n_classes=n_classes,
    )


def check_plan(plan: ExtractionPlan) -> None:
    """Refuse a plan that would not fit, with the numbers and what to change.

    Raises:
        ResourceError: Not enough disk or memory.
    """
    if plan.disk_free is not None and plan.disk_needed > plan.disk_free:
        raise ResourceError(
            f"extracting {plan.model} needs {human_bytes(plan.disk_needed)} of disk "
            f"({human_bytes(plan.bytes_per_image)} per image x {plan.n_todo} images over "
            f"{len(plan.layers)} layers) but only {human_bytes(plan.disk_free)} is free: probe "
            "fewer layers (--layers), pool to fewer dimensions (--pooling avg or srp:1024), or "
            "free disk space"
        )
    if plan.ram_free is not None and plan.ram_needed > plan.ram_free:
        raise ResourceError(
            f"extracting {plan.model} needs about {human_bytes(plan.ram_needed)} of memory but "
            f"{human_bytes(plan.ram_free)} is available: lower --batch-size or --shard-size, or "
            "pool to fewer dimensions"
        )
