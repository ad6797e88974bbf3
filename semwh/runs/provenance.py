"""Provenance of an analysis: canonical parameters, their hash, versions, seeds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from semwh.version import __version__

# The libraries whose numerics decide an analysis' numbers.
TRACKED_LIBRARIES = ("numpy", "scipy", "torch")

# Seeds are stored in signed 64-bit columns.
SEED_BITS = 63


def library_versions() -> dict[str, str | None]:
    """Installed versions of the tracked libraries (None where one is absent)."""
    found: dict[str, str | None] = {}
    for name in TRACKED_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def semwh_version() -> str:
    return __version__


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal parameters hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def params_sha256(params: dict[str, Any]) -> str:
    return sha256_text(canonical_json(params))


def concepts_sha256(wnids: Sequence[str]) -> str:
    """Hash of a sorted concept list: SHA-256 of the wnids joined by newlines."""
    return sha256_text("\n".join(wnids))


def draw_seed() -> int:
    """A fresh seed from the operating system's entropy, cut to fit a signed 64-bit column."""
    entropy = np.random.SeedSequence().entropy  # a 128-bit int when drawn from the OS
    assert isinstance(entropy, int)
    return entropy >> (128 - SEED_BITS)


def derive_seed(parent: int, *keys: str) -> int:
    """A child seed that depends only on ``parent`` and ``keys``, never on execution order.

    Every mapper (a local loop, a process pool, a cluster) derives the same seed for the same
    comparison, so a sweep's results do not depend on which mapper ran it.
    """
    text = "\x1f".join([str(parent), *keys])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)
