"""Image preprocessing of a vision model, split so decoding runs in loader workers.

Workers decode, resize and centre-crop to a uint8 tensor (what torchvision's
``ImageClassification`` transform does to a PIL image before it converts to float); the device
then converts to float and normalises the whole batch. The result is identical to applying the
weights' transform image by image, and only a quarter of the bytes cross to the GPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from semwh.errors import InputError


@dataclass(frozen=True)
class Preprocessing:
    """How one model wants its images.

    Attributes:
        resize: Shorter side after resizing, in pixels.
        crop: Side of the square centre crop.
        interpolation: Resize interpolation (torchvision InterpolationMode value).
        scale: Pixel values are divided by this first (255 for torchvision, 1 for 0-255 input).
        mean: Per-channel mean subtracted after scaling (RGB).
        std: Per-channel divisor after subtracting the mean (RGB).
    """

    resize: int
    crop: int
    interpolation: str = "bilinear"
    scale: float = 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["color"] = "RGB"
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_transform(cls, transform: Any) -> Preprocessing:
        """Read torchvision's ``ImageClassification`` transform of a weights enum."""
        from torchvision.transforms import InterpolationMode

        return cls(
            resize=int(transform.resize_size[0]),
            crop=int(transform.crop_size[0]),
            interpolation=InterpolationMode(transform.interpolation).value,
            scale=255.0,
            mean=tuple(float(v) for v in transform.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in transform.std),  # type: ignore[arg-type]
        )

    def load(self, path: str | Path) -> torch.Tensor:
        """Decode, resize and crop one image file to a 3 x crop x crop uint8 tensor (RGB).

        Raises:
            InputError: The file is missing or not an image.
        """
        try:
            with PILImage.open(path) as img:
                rgb = to_rgb(img)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot decode image {path}: {exc}") from exc
        # Imported here: torchvision takes about a second to import, and a rerun of a finished
        # extraction of a model outside torchvision never needs it.
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        rgb = TF.resize(rgb, [self.resize], interpolation=InterpolationMode(self.interpolation))
        rgb = TF.center_crop(rgb, [self.crop])
        array = np.asarray(rgb, dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 B x 3 x H x W (any device) to the float32 input the model expects.

        Uses the same operations, in the same order, as torchvision's transform
        (``convert_image_dtype`` then ``normalize``) so results match it bit for bit.
        """
        x = batch.to(torch.float32)
        if self.scale != 1.0:
            x = x.div_(self.scale)
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """An 8-bit RGB copy of any image ingest accepts (CMYK, palette, 16-bit, ...).

    PIL's ``convert("RGB")`` clips 16-bit grey values at 255 instead of scaling them, which
    turns a 16-bit photo almost white: scale 0..65535 down to 0..255 first.
    """
    if img.mode == "I" or img.mode.startswith("I;16"):
        grey = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        return PILImage.fromarray(grey.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")
