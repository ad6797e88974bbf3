"""Free memory and disk of this machine, and byte counts for people (the plans use them)."""

from __future__ import annotations

import shutil
from pathlib import Path


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None elsewhere."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def free_disk(folder: Path) -> int | None:
    """Free bytes of the file system holding ``folder`` (or its nearest existing parent)."""
    path = Path(folder)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(text: str) -> int:
    """``16G``, ``512MB``, ``1.5GiB`` or a plain number of bytes, as bytes (powers of 1024).

    Raises:
        ConfigError: Not a size.
    """
    from semwh.errors import ConfigError

    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS and not value[-1:].isdigit() else ""
    number = value[: len(value) - len(unit)].strip()
    try:
        size = float(number) * _UNITS[unit]
    except ValueError:
        size = -1.0
    if not size > 0:
        raise ConfigError(f"not a memory size: {text!r} (e.g. 16G, 512M or a number of bytes)")
    return int(size)


def is_limit_reason(reason: str) -> bool:
    """Whether ``reason`` (of :func:`image_size_problem`) is a configurable limit, which an
    intact file may exceed on one machine and not on another (never a damaged file)."""
    from semwh.config import ENV_MAX_ASPECT_RATIO, ENV_MAX_IMAGE_PIXELS

    return ENV_MAX_IMAGE_PIXELS in reason or ENV_MAX_ASPECT_RATIO in reason


def image_size_problem(width: int, height: int, resize: int | None = None) -> str | None:
    """Why an image of these dimensions is refused before decoding, or None.

    The limits (:func:`semwh.config.image_limits`) bound the decoded pixels and the aspect
    ratio: a model resizes the short side, so a 100000 x 1 image would grow to 25600000 x 256
    pixels (20 GB) in a 256-pixel resize. With ``resize`` (the short side after a model's
    resize) the resized image is held to the pixel limit too.
    """
    from semwh.config import ENV_MAX_ASPECT_RATIO, ENV_MAX_IMAGE_PIXELS, image_limits

    max_pixels, max_aspect = image_limits()
    if width < 1 or height < 1:
        return f"impossible dimensions {width} x {height}"
    if width * height > max_pixels:
        return (
            f"{width} x {height} pixels is more than the {max_pixels} pixels an image may "
            f"decode to (about {human_bytes(3 * width * height)} as RGB); set "
            f"{ENV_MAX_IMAGE_PIXELS} to allow it"
        )
    aspect = max(width, height) / min(width, height)
    if resize is not None and resize * resize * aspect > max_pixels:
        return (
            f"{width} x {height} pixels would be resized to about {resize} x "
            f"{resize * aspect:.0f}, more than the {max_pixels} pixels an image may take; "
            f"set {ENV_MAX_IMAGE_PIXELS} to allow it"
        )
    if aspect > max_aspect:
        return (
            f"{width} x {height} pixels has an aspect ratio of {aspect:.0f}:1, beyond "
            f"{max_aspect:g}:1 (a model's resize of its short side would need about "
            f"{human_bytes(3 * 256 * 256 * aspect)}); set {ENV_MAX_ASPECT_RATIO} to allow it"
        )
    return None
