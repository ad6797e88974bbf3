"""SHA-256 of files, streamed in blocks: the one content hash of weights, inputs and Parquet."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK_BYTES = 1 << 22


def sha256_file(path: Path, digest: hashlib._Hash | None = None) -> str:
    """SHA-256 of a file's bytes (or feed them into ``digest`` and return its hex so far)."""
    digest = digest if digest is not None else hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One hash over several files, in the order given (e.g. a matrix and its vocabulary)."""
    digest = hashlib.sha256()
    for path in paths:
        sha256_file(path, digest)
    return digest.hexdigest()
