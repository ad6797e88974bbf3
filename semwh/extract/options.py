"""What an extraction job is asked to do, whichever backend runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SHARD_SIZE = 1000
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class ExtractionOptions:
    """The request of an extraction job (``semwh extract``'s options).

    The same options go to the local backend (:func:`semwh.extract.run_extraction`) and to
    the Ray one (:func:`semwh.ray.extract.run_extraction_ray`); they are checked when the job
    starts, before any model is loaded.

    Attributes:
        model: ``[torchvision:]NAME``, ``efficientnet_lite0``, ``timm:NAME``,
            ``hf:ID_OR_DIR``, ``openclip:MODEL[@PRETRAINED]``, ``module:PKG.MOD:CALLABLE`` or
            an outside source's ``PREFIX:REF`` (:mod:`semwh.extract.sources`).
        weights: ``default`` (the source's trained weights), a torchvision weights member, or
            ``none`` (seeded random initialisation).
        weights_file: A local weights file instead of a download.
        name: Registry model name (default ``ARCH`` or ``ARCH-random``).
        seed: Seed of the random initialisation and of ``srp`` projections.
        layers: ``None``/``default``, ``all``, or module paths (comma-separated or a list).
        pooling: ``avg``, ``flatten`` or ``srp:D`` for 4-D outputs.
        token_pooling: ``mean`` (patch tokens) or ``cls`` for token outputs.
        preprocessing: Replaces or adjusts the source's preprocessing (a preset and/or
            ``key=value`` entries, or a mapping); required for ``module:`` models.
        layouts: Declared output layouts (``PATTERN=LAYOUT`` entries and/or a fallback
            layout, or a mapping); see :mod:`semwh.extract.layouts`.
        batch_size: Images per forward pass.
        shard_size: Images per shard (the unit of resumption and registration).
        device: ``cpu``, ``cuda``... (default: CUDA when available).
        precision: ``auto`` (fp32 on CPU, bf16/fp16 on GPU), ``fp32``, ``bf16`` or ``fp16``.
        channels_last: Channels-last memory format (default: on GPU).
        decoder: ``auto`` (JPEGs decoded on the GPU when the device is CUDA, else PIL in
            the loader workers), ``pil`` or ``jpeg`` (:mod:`semwh.extract.decode`).
        shard: ``"i/n"``: run only shards i, i+n, ... so n processes can share the job.
        num_workers: DataLoader decoding workers (default from the CPU count).
    """

    model: str
    weights: str = "default"
    weights_file: str | Path | None = None
    name: str | None = None
    seed: int = 0
    layers: str | list[str] | None = None
    pooling: str = "avg"
    token_pooling: str = "mean"
    preprocessing: str | dict[str, Any] | None = None
    layouts: str | dict[str, str] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    shard_size: int = DEFAULT_SHARD_SIZE
    device: str | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    decoder: str = "auto"
    shard: str | tuple[int, int] | None = None
    num_workers: int | None = None


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_SHARD_SIZE", "ExtractionOptions"]
