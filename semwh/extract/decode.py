"""JPEG decoding on the model's device: loader workers read file bytes, the device decodes.

The CPU path decodes with PIL in the loader workers (:class:`semwh.extract.batches.
ImageDataset`). On a GPU, decoding there would need as many CPU cores as the GPU runs images
through the network; instead workers only read each file's bytes, and batches are decoded with
``torchvision.io.decode_jpeg`` on the device (nvjpeg), resized and centre-cropped there. On
CUDA the decoding of the next batch runs on a side stream while the previous batch's forward
runs, so the two overlap. Files that are not JPEGs (PNG, ...) are decoded by PIL in the
workers as before, as are JPEGs the device decoder refuses.

The pixels differ from PIL's by the decoders' rounding (IDCT, chroma upsampling) and by the
tensor resize's antialiasing filter: within a few grey levels per pixel, about one level on
average (tests/unit/extract/test_decode.py pins the tolerance).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from semwh.extract.preprocess import Preprocessing

DECODERS = ("auto", "pil", "jpeg")

#: Every JPEG file starts with the SOI marker followed by another marker.
JPEG_MAGIC = b"\xff\xd8\xff"

#: An item of a batch: (file index, JPEG bytes or None, PIL-decoded pixels or None).
Item = tuple[int, torch.Tensor | None, torch.Tensor | None]


def resolve_decoder(decoder: str, device: torch.device) -> str:
    """``jpeg`` (device decoding) on CUDA, ``pil`` elsewhere, unless told."""
    from semwh.errors import ConfigError

    if decoder not in DECODERS:
        raise ConfigError(f"unknown decoder {decoder!r} (choose {', '.join(DECODERS)})")
    if decoder != "auto":
        return decoder
    return "jpeg" if device.type == "cuda" else "pil"


class FileBytesDataset(Dataset):
    """JPEG files as raw bytes (decoded later, in batches); other images decoded by PIL."""

    def __init__(self, paths: Sequence[str | Path], preprocessing: Preprocessing) -> None:
        self.paths = list(paths)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        path = self.paths[index]
        with open(path, "rb") as handle:
            data = handle.read()
        if data.startswith(JPEG_MAGIC):
            _check_header(data, path, self.preprocessing)
            return index, torch.frombuffer(bytearray(data), dtype=torch.uint8), None
        return index, None, self.preprocessing.load(path)


def _check_header(data: bytes, path: str | Path, preprocessing: Preprocessing) -> None:
    """The size limits of :func:`semwh.extract.preprocess.check_image_size`, read from the
    JPEG header alone (PIL opens lazily), before the device decodes a pixel."""
    import io

    from PIL import Image as PILImage

    from semwh.extract.preprocess import check_image_size

    try:
        image = PILImage.open(io.BytesIO(data))
    except (OSError, ValueError):
        return  # not readable by PIL either: the device decoder reports it
    shorter = preprocessing.resize_mode == "shorter"
    with image:
        check_image_size(image, path, preprocessing.resize if shorter else None)


def collate_items(items: list[Item]) -> list[Item]:
    """Keep a batch as a list: files differ in size until they are decoded."""
    return items


def resize_crop(image: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Resize a 3 x H x W uint8 tensor (shorter side) and centre-crop it, on its device."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    mode = InterpolationMode(preprocessing.interpolation)
    resized = F.resize(image, [preprocessing.resize], interpolation=mode, antialias=True)
    return F.center_crop(resized, [preprocessing.crop])


def decode_batch(
    items: Sequence[Item],
    preprocessing: Preprocessing,
    device: torch.device,
    paths: Sequence[str | Path] | None = None,
) -> torch.Tensor:
    """B x 3 x crop x crop uint8 tensor on ``device``, in the order of ``items``.

    JPEG bytes are decoded together by ``torchvision.io.decode_jpeg`` on ``device``; a batch
    the decoder refuses is retried file by file, and a file it still refuses is decoded by
    PIL (``paths`` give the files) or raises the decoder's error.
    """
    out: list[torch.Tensor | None] = [None] * len(items)
    jpegs = [(k, data) for k, (_, data, _) in enumerate(items) if data is not None]
    for k, (_, _, pixels) in enumerate(items):
        if pixels is not None:
            out[k] = pixels.to(device, non_blocking=True)
    if jpegs:
        datas = [data for _, data in jpegs]
        try:
            images = _decode_jpeg(datas, device)
            decoded = [(image, False) for image in images]
        except RuntimeError:
            decoded = [
                _decode_one(data, items[k][0], preprocessing, device, paths) for k, data in jpegs
            ]
        for (k, _), (image, cropped) in zip(jpegs, decoded, strict=True):
            out[k] = image if cropped else resize_crop(image, preprocessing)
    return torch.stack([image for image in out if image is not None])


def _decode_one(
    data: torch.Tensor,
    index: int,
    preprocessing: Preprocessing,
    device: torch.device,
    paths: Sequence[str | Path] | None,
) -> tuple[torch.Tensor, bool]:
    """One file: (decoded image, False), or (PIL's resized crop, True) when refused."""
    try:
        return _decode_jpeg(data, device), False
    except RuntimeError:
        if paths is None:
            raise
        return preprocessing.load(paths[index]).to(device), True


def _decode_jpeg(data: Any, device: torch.device) -> Any:
    """``torchvision.io.decode_jpeg`` to RGB on ``device`` (one tensor or a list)."""
    with warnings.catch_warnings():
        # torchvision 0.29 announces that its decoders will move to another package; the
        # pinned version still ships them, and a notice per batch helps nobody.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def iter_decoded(
    batches: Iterable[Sequence[Item]],
    preprocessing: Preprocessing,
    device: torch.device,
    paths: Sequence[str | Path] | None = None,
) -> Iterator[torch.Tensor]:
    """Decoded uint8 batches on ``device``, one batch ahead of the consumer.

    On CUDA, batch k + 1 is decoded on a side stream while the consumer runs batch k on the
    current stream; the current stream waits for the decode before it uses a batch.
    """
    side: Any = torch.cuda.Stream(device) if device.type == "cuda" else None
    ready: torch.Tensor | None = None
    for items in batches:
        context = torch.cuda.stream(side) if side is not None else contextlib.nullcontext()
        with context:
            batch = decode_batch(items, preprocessing, device, paths)
        if ready is not None:
            yield ready
        if side is not None:
            current = torch.cuda.current_stream(device)
            current.wait_stream(side)
            # The batch was allocated on the side stream and is used on the current one.
            batch.record_stream(current)
        ready = batch
    if ready is not None:
        yield ready
