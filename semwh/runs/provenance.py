"""Provenance of an analysis: canonical parameters, their hash, versions, seeds."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from semwh.seeds import SEED_BITS
from semwh.seeds import derive_seed as derive_seed
from semwh.version import __version__

# The libraries whose numerics decide an analysis' numbers.
TRACKED_LIBRARIES = ("numpy", "scipy", "torch")

# Seeds are stored in signed 64-bit columns.


def library_versions() -> dict[str, str | None]:
    """Installed versions of the tracked libraries (None where one is absent)."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> tuple[tuple[str, str | None], ...]:
    # Read once per process: reading a package's metadata takes milliseconds, and every
    # stored result records the versions (the libraries a process runs do not change).
    found: list[tuple[str, str | None]] = []
    for name in TRACKED_LIBRARIES:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


def semwh_version() -> str:
    return __version__


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal parameters hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def params_sha256(params: dict[str, Any]) -> str:
    return sha256_text(canonical_json(params))


def concepts_sha256(concept_ids: Sequence[str]) -> str:
    """Hash of a sorted concept list: SHA-256 of the concept_ids joined by newlines."""
    return sha256_text("\n".join(concept_ids))


def draw_seed() -> int:
    """A fresh seed from the operating system's entropy, cut to fit a signed 64-bit column."""
    entropy = np.random.SeedSequence().entropy  # a 128-bit int when drawn from the OS
    assert isinstance(entropy, int)
    return entropy >> (128 - SEED_BITS)
