"""The one place where settings and SEMWH_* environment variables are read."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_WAREHOUSE = "SEMWH_WAREHOUSE"
ENV_DB = "SEMWH_DB"
ENV_VECTORS = "SEMWH_VECTORS"
ENV_SAMPLES = "SEMWH_SAMPLES"
# Where `semwh demo` fetches its public sample set from (base URL; each file is URL + name).
ENV_SAMPLES_URL = "SEMWH_SAMPLES_URL"
# The manifest (file,size,sha256) of that sample set, if not the one shipped with semwh.
ENV_SAMPLES_MANIFEST = "SEMWH_SAMPLES_MANIFEST"
# semwh's cache folder (default: the platform's user cache folder, e.g. ~/.cache/semwh).
ENV_CACHE = "SEMWH_CACHE"
ENV_DEVICE = "SEMWH_DEVICE"
ENV_WORDNET = "SEMWH_WORDNET"
# Folders (os.pathsep-separated) whose files `semwh sql` and named queries may read.
ENV_ALLOW_READ = "SEMWH_ALLOW_READ"
# Image size limits, checked from the file's header before any pixel is decoded.
ENV_MAX_IMAGE_PIXELS = "SEMWH_MAX_IMAGE_PIXELS"
ENV_MAX_ASPECT_RATIO = "SEMWH_MAX_ASPECT_RATIO"
# Seconds a `semwh sql` statement or named query may run (0: no limit).
ENV_SQL_TIMEOUT = "SEMWH_SQL_TIMEOUT"
# Testing knob: inject crashes and I/O errors at named points (see semwh.testing.faults).
ENV_FAULT = "SEMWH_FAULT"
# Permutation kernels: "auto" (the default: compiled from a few hundred concepts on),
# "numba" (compiled always) or "numpy" (the reference path); compiled falls back to numpy
# where numba does not work.
ENV_KERNELS = "SEMWH_KERNELS"
KERNEL_CHOICES = ("auto", "numba", "numpy")

DEFAULT_WAREHOUSE = "semwh-warehouse"
REGISTRY_FILENAME = "registry.duckdb"
VECTORS_DIRNAME = "vectors"
# Files being written inside the warehouse folder, renamed into place when complete.
TMP_DIRNAME = "tmp"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one invocation.

    Attributes:
        warehouse: The warehouse folder.
        db_url: SQLAlchemy URL of the registry, or None for the DuckDB file in the folder.
        vectors: Vectors root (a folder or a storage URI such as ``s3://bucket/prefix``), or
            None for the one the registry records (by default ``<warehouse>/vectors``).
        samples: Folder of sample images for the demo, if configured.
        samples_url: Base URL of the demo's public sample set, if not the default.
        samples_manifest: Manifest of that set, if not the one shipped with semwh.
        cache: semwh's cache folder, if not the platform's default.
        device: Torch device name preference ("cpu", "cuda", or None for automatic).
        wordnet: Folder holding WordNet 3.0 database files, if configured.
        allow_read: Folders whose files user SQL may read besides the vectors root
            (``SEMWH_ALLOW_READ``; commands add their ``--allow-read`` folders).
    """

    warehouse: Path
    db_url: str | None = None
    vectors: str | None = None
    samples: Path | None = None
    samples_url: str | None = None
    samples_manifest: Path | None = None
    cache: Path | None = None
    device: str | None = None
    wordnet: Path | None = None
    allow_read: tuple[Path, ...] = ()


def _path_or_none(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def load_settings(
    warehouse: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    vectors: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings from explicit values first, then the environment, then defaults."""
    env = os.environ if environ is None else environ
    folder = warehouse or env.get(ENV_WAREHOUSE) or DEFAULT_WAREHOUSE
    return Settings(
        warehouse=Path(folder).expanduser(),
        db_url=db_url or env.get(ENV_DB) or None,
        vectors=vectors or env.get(ENV_VECTORS) or None,
        samples=_path_or_none(env.get(ENV_SAMPLES)),
        samples_url=env.get(ENV_SAMPLES_URL) or None,
        samples_manifest=_path_or_none(env.get(ENV_SAMPLES_MANIFEST)),
        cache=_path_or_none(env.get(ENV_CACHE)),
        device=env.get(ENV_DEVICE) or None,
        wordnet=_path_or_none(env.get(ENV_WORDNET)),
        allow_read=tuple(
            Path(item).expanduser()
            for item in (env.get(ENV_ALLOW_READ) or "").split(os.pathsep)
            if item.strip()
        ),
    )


#: Default image limits: 100 million pixels (300 MB as RGB) and a long side at most 50
#: times the short one (a model's resize of the short side multiplies the long one too).
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
DEFAULT_MAX_ASPECT_RATIO = 50.0
#: Default time limit of user SQL, in seconds.
DEFAULT_SQL_TIMEOUT = 600.0


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    from semwh.errors import ConfigError

    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={text!r} is not a positive number")
    return value


def image_limits(environ: dict[str, str] | None = None) -> tuple[int, float]:
    """The largest decoded image (pixels) and aspect ratio (long side / short side) accepted.

    Raises:
        ConfigError: ``SEMWH_MAX_IMAGE_PIXELS`` or ``SEMWH_MAX_ASPECT_RATIO`` is not a
            positive number.
    """
    env = os.environ if environ is None else environ
    pixels = _positive(env, ENV_MAX_IMAGE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS)
    return int(pixels), _positive(env, ENV_MAX_ASPECT_RATIO, DEFAULT_MAX_ASPECT_RATIO)


def sql_timeout(value: float | None = None, environ: dict[str, str] | None = None) -> float:
    """Seconds user SQL may run: ``value`` (``--timeout``), else ``SEMWH_SQL_TIMEOUT``, else
    the default; 0 means no limit.

    Raises:
        ConfigError: A negative, non-finite or non-numeric limit.
    """
    from semwh.errors import ConfigError

    if value is None:
        env = os.environ if environ is None else environ
        text = (env.get(ENV_SQL_TIMEOUT) or "").strip()
        if not text:
            return DEFAULT_SQL_TIMEOUT
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{ENV_SQL_TIMEOUT}={text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ConfigError(f"SQL timeout {value!r} must be a number of seconds >= 0 (0: no limit)")
    return float(value)


def fault_spec(environ: dict[str, str] | None = None) -> str | None:
    """The fault-injection spec of this process (``SEMWH_FAULT``), for tests only.

    See :mod:`semwh.testing.faults` for its syntax; unset in normal use.
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_FAULT) or None


def kernel_choice(environ: Mapping[str, str] | None = None) -> str:
    """The permutation kernels to use: ``SEMWH_KERNELS`` (``auto``, the default, ``numba`` or
    ``numpy``; see :mod:`semwh.analyze.kernels`).

    Raises:
        ConfigError: Another value.
    """
    env = os.environ if environ is None else environ
    value = (env.get(ENV_KERNELS) or "auto").strip().lower()
    if value not in KERNEL_CHOICES:
        from semwh.errors import ConfigError

        raise ConfigError(
            f"{ENV_KERNELS}={env.get(ENV_KERNELS)!r} is not a kernel choice "
            f"(choose {', '.join(KERNEL_CHOICES)})"
        )
    return value
