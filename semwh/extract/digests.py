"""SHA-256 of weights files, remembered by file identity so an unchanged file is hashed once.

A weights file (20 MB to over 500 MB) is hashed to identify an extraction run. The digest is
kept in ``<warehouse>/cache/weights_sha256.json`` under the file's real path together with
what the operating system says about the file: size, mtime_ns, ctime_ns, inode and device.
A lookup trusts an entry only when all of these still match and the entry's own checksum
holds; anything else (a touched, rewritten, replaced or moved file, an entry or a cache file
that is damaged or unreadable) hashes the file again. ctime cannot be set back by a user, so
a rewrite that restores the old size and mtime is still seen.

A file modified within :data:`RACY_SECONDS` of being hashed is not remembered: a write in the
same timestamp tick could otherwise leave the stat unchanged (git's "racily clean" entries).
Several processes may share the cache: each writes a whole new file and renames it over the
old one, so a reader sees one complete version; an entry lost to a concurrent writer only
costs one more hash. Failing to write the cache (a read-only warehouse) is not an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from semwh.hashing import sha256_file

CACHE_FILENAME = "cache/weights_sha256.json"
CACHE_VERSION = 1
RACY_SECONDS = 2.0

_STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "inode", "device")


def _stat(path: Path) -> dict[str, int]:
    st = os.stat(path)
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }


def _check(key: str, stat: dict[str, int], sha256: str) -> str:
    text = json.dumps([key, [stat[f] for f in _STAT_FIELDS], sha256])
    return hashlib.sha256(text.encode()).hexdigest()


def _is_hex64(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


class WeightsDigests:
    """SHA-256 of files, with a cache file keyed by file identity.

    Args:
        cache_file: The JSON cache (None: hash every time, remember nothing).

    Attributes:
        hashed: Files this instance actually read and hashed (cache misses).
    """

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self.hashed = 0

    @classmethod
    def of_warehouse(cls, root: Path) -> WeightsDigests:
        """The cache of a warehouse folder."""
        return cls(root / CACHE_FILENAME)

    def sha256(self, path: Path) -> str:
        """SHA-256 of the file's bytes (from the cache when the file is unchanged).

        Raises:
            OSError: The file cannot be read.
        """
        real = Path(os.path.realpath(path))
        key = str(real)
        before = _stat(real)
        cached = self._lookup(key, before)
        if cached is not None:
            return cached
        started = time.time_ns()
        digest = sha256_file(real)
        self.hashed += 1
        after = _stat(real)
        settled = started - after["mtime_ns"] > RACY_SECONDS * 1e9
        if after == before and settled:
            self._store(key, after, digest)
        return digest

    def _read(self) -> dict[str, Any]:
        if self.cache_file is None:
            return {}
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def _lookup(self, key: str, stat: dict[str, int]) -> str | None:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return None
        if any(entry.get(f) != stat[f] for f in _STAT_FIELDS):
            return None
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _is_hex64(digest):
            return None
        return digest if entry.get("check") == _check(key, stat, digest) else None

    def _store(self, key: str, stat: dict[str, int], digest: str) -> None:
        if self.cache_file is None:
            return
        files = self._read()
        files[key] = {**stat, "sha256": digest, "check": _check(key, stat, digest)}
        text = json.dumps({"version": CACHE_VERSION, "files": files}, indent=1, sort_keys=True)
        # A name of its own per writer; mode 0o666 less the umask, like any file the user writes.
        tmp = self.cache_file.with_name(
            f".{self.cache_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        )
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, self.cache_file)
        except OSError:
            # The digest is still right; only the next run will hash the file again.
            with contextlib.suppress(OSError):
                tmp.unlink()
