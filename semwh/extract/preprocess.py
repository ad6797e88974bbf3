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

from semwh.errors import ConfigError, InputError
from semwh.extract.layouts import comma_entries

RESIZE_MODES = ("shorter", "square")
CROP_ROUNDINGS = ("round", "floor")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

#: Named preprocessings for ``--preprocessing`` (keys may follow: ``imagenet,crop=192``).
PRESETS: dict[str, dict[str, Any]] = {
    # torchvision's ImageNet classifiers (resize 256, centre crop 224).
    "imagenet": {"resize": 256, "crop": 224, "interpolation": "bilinear"},
    # OpenAI CLIP: bicubic resize of the shorter side to 224, crop 224, CLIP's statistics.
    "clip": {
        "resize": 224,
        "crop": 224,
        "interpolation": "bicubic",
        "mean": (0.48145466, 0.4578275, 0.40821073),
        "std": (0.26862954, 0.26130258, 0.27577711),
    },
    # Inputs scaled to [-1, 1] (many ViTs): bicubic, crop 224 of 248.
    "half": {
        "resize": 248,
        "crop": 224,
        "interpolation": "bicubic",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    },
}


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
        resize_mode: ``shorter`` (the shorter side becomes ``resize``, aspect kept) or
            ``square`` (both sides become ``resize``, as Hugging Face ViT processors and
            timm's ``squash`` crop mode do).
        crop_rounding: Offset of the centre crop when the margin is odd: ``round``
            (torchvision, timm) or ``floor`` (Hugging Face image processors).
    """

    resize: int
    crop: int
    interpolation: str = "bilinear"
    scale: float = 255.0
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize_mode: str = "shorter"
    crop_rounding: str = "round"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(
                f"unknown resize mode {self.resize_mode!r} (choose {', '.join(RESIZE_MODES)})"
            )
        if self.crop_rounding not in CROP_ROUNDINGS:
            raise ConfigError(
                f"unknown crop rounding {self.crop_rounding!r} (choose {', '.join(CROP_ROUNDINGS)})"
            )
        if self.resize < 1 or self.crop < 1:
            raise ConfigError(
                f"preprocessing resize={self.resize}, crop={self.crop}: sizes must be positive"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(v == 0 for v in self.std):
            raise ConfigError("preprocessing mean and std need three values, std non-zero")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["color"] = "RGB"
        # Recorded only when they differ from the one behaviour older runs had, so the
        # identity of those runs (and their resumption) is unchanged.
        if self.resize_mode == "shorter":
            del data["resize_mode"]
        if self.crop_rounding == "round":
            del data["crop_rounding"]
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
                check_image_size(img, path, self.resize if self.resize_mode == "shorter" else None)
                rgb = to_rgb(img)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot decode image {path}: {exc}") from exc
        # Imported here: torchvision takes about a second to import, and a rerun of a finished
        # extraction of a model outside torchvision never needs it.
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        size = [self.resize, self.resize] if self.resize_mode == "square" else [self.resize]
        rgb = TF.resize(rgb, size, interpolation=InterpolationMode(self.interpolation))
        if self.crop_rounding == "floor":
            width, height = rgb.size
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            rgb = rgb.crop((left, top, left + self.crop, top + self.crop))
        else:
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


def check_image_size(img: PILImage.Image, path: str | Path, resize: int | None = None) -> None:
    """Refuse an opened (not yet decoded) image whose header gives too many pixels or an
    extreme aspect ratio, before its pixels or its resize take the memory; ``resize`` is the
    short side after the model's resize (None: a square resize, bounded by the model).

    Raises:
        InputError: The size is beyond the limits of :func:`semwh.resources.image_size_problem`.
    """
    from semwh.resources import image_size_problem

    problem = image_size_problem(*img.size, resize)
    if problem is not None:
        raise InputError(
            f"image {path}: {problem}; ingest skips such files: remove it from the warehouse's "
            "images or raise the limit"
        )


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """An 8-bit RGB copy of any image ingest accepts (CMYK, palette, 16-bit, ...).

    PIL's ``convert("RGB")`` clips 16-bit grey values at 255 instead of scaling them, which
    turns a 16-bit photo almost white: scale 0..65535 down to 0..255 first.
    """
    if img.mode == "I" or img.mode.startswith("I;16"):
        grey = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        return PILImage.fromarray(grey.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def parse_preprocessing(
    spec: str | dict[str, Any] | None, base: Preprocessing | None = None
) -> Preprocessing | None:
    """A preprocessing from ``--preprocessing`` text or a run file's table.

    Text: a preset (``imagenet``, ``clip``, ``half``) and/or ``key=value`` entries separated by
    commas, e.g. ``imagenet,crop=192`` or ``resize=256,crop=224,interpolation=bicubic,
    mean=0.5/0.5/0.5,std=0.5/0.5/0.5``. Keys are the fields of :class:`Preprocessing`. Entries
    change ``base`` (the source's own preprocessing) when there is one and no preset is named.

    Returns:
        The preprocessing, or ``base`` when ``spec`` is empty.

    Raises:
        ConfigError: An unknown preset, key or value.
    """
    if spec is None or spec == "" or spec == {}:
        return base
    values: dict[str, Any] = {}
    preset: str | None = None
    if isinstance(spec, dict):
        items = list(spec.items())
        if "preset" in spec:
            preset = str(spec["preset"])
            items = [(k, v) for k, v in items if k != "preset"]
    else:
        items = []
        for key, value in comma_entries(str(spec)):
            if value is None:
                if preset is not None:
                    raise ConfigError(f"--preprocessing names two presets: {preset}, {key}")
                preset = key
            else:
                items.append((key, value))
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                f"unknown preprocessing preset {preset!r} (choose {', '.join(PRESETS)})"
            )
        values.update(PRESETS[preset])
    elif base is not None:
        values.update(asdict(base))
    fields = {f for f in Preprocessing.__dataclass_fields__}
    for key, value in items:
        if key not in fields:
            raise ConfigError(
                f"unknown preprocessing key {key!r} (choose {', '.join(sorted(fields))})"
            )
        values[key] = _preprocessing_value(key, value)
    missing = [k for k in ("resize", "crop") if k not in values]
    if missing:
        raise ConfigError(
            f"preprocessing needs {' and '.join(missing)}: e.g. --preprocessing imagenet or "
            "resize=256,crop=224"
        )
    if values.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {values['interpolation']!r} "
            f"(choose {', '.join(INTERPOLATIONS)})"
        )
    return Preprocessing(**values)


def _preprocessing_value(key: str, value: Any) -> Any:
    try:
        if key in ("mean", "std"):
            parts = value.split("/") if isinstance(value, str) else list(value)
            return tuple(float(v) for v in parts)
        if key in ("resize", "crop"):
            return int(value)
        if key == "scale":
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"preprocessing {key}={value!r} is not a valid value") from None
    return str(value)
