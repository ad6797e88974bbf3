"""The one place where settings and SEMWH_* environment variables are read."""

from __future__ import annotations

import os
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
# Testing knob: inject crashes and I/O errors at named points (see semwh.testing.faults).
ENV_FAULT = "SEMWH_FAULT"

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


def fault_spec(environ: dict[str, str] | None = None) -> str | None:
    """The fault-injection spec of this process (``SEMWH_FAULT``), for tests only.

    See :mod:`semwh.testing.faults` for its syntax; unset in normal use.
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_FAULT) or None
