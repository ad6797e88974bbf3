"""Seeds: drawn fresh, or derived from a parent seed and keys (never from execution order)."""

from __future__ import annotations

import hashlib

#: Seeds are drawn and derived in 63 bits (stored as signed 64-bit integers).
SEED_BITS = 63


def derive_seed(parent: int, *keys: str) -> int:
    """A child seed that depends only on ``parent`` and ``keys``, never on execution order.

    Every mapper (a local loop, a process pool, a cluster) derives the same seed for the same
    comparison, so a sweep's results do not depend on which mapper ran it.
    """
    text = "\x1f".join([str(parent), *keys])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)
