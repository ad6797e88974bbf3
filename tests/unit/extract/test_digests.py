"""Weights digests remembered by file identity: a hit never reads the file, any change re-hashes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from semwh.extract.digests import CACHE_FILENAME, RACY_SECONDS, WeightsDigests


def _old_file(path: Path, data: bytes) -> Path:
    """A file last modified a minute ago (past the racy window)."""
    path.write_bytes(data)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def _entries(cache: Path) -> dict:
    return json.loads(cache.read_text())["files"]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "wh" / CACHE_FILENAME


def test_hash_is_recorded_then_reused(tmp_path: Path, cache: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"weights" * 1000)
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    first = WeightsDigests(cache)
    assert first.sha256(weights) == expected and first.hashed == 1
    entry = _entries(cache)[str(weights.resolve())]
    assert entry["sha256"] == expected and entry["size"] == weights.stat().st_size
    assert entry["mtime_ns"] == weights.stat().st_mtime_ns
    again = WeightsDigests(cache)
    assert again.sha256(weights) == expected and again.hashed == 0
    # Through a symlink the file is the same one.
    link = tmp_path / "link.pt"
    link.symlink_to(weights)
    assert again.sha256(link) == expected and again.hashed == 0


def test_touch_rehashes_and_updates_the_entry(tmp_path: Path, cache: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"abc" * 100)
    WeightsDigests(cache).sha256(weights)
    later = time.time() - 30
    os.utime(weights, (later, later))
    digests = WeightsDigests(cache)
    assert digests.sha256(weights) == hashlib.sha256(b"abc" * 100).hexdigest()
    assert digests.hashed == 1
    assert _entries(cache)[str(weights.resolve())]["mtime_ns"] == weights.stat().st_mtime_ns
    assert WeightsDigests(cache).sha256(weights) and digests.hashed == 1


def test_rewrite_with_the_old_size_and_mtime_is_seen(tmp_path: Path, cache: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"A" * 4096)
    old = WeightsDigests(cache).sha256(weights)
    stat = weights.stat()
    time.sleep(0.01)
    weights.write_bytes(b"B" * 4096)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert weights.stat().st_size == stat.st_size
    assert weights.stat().st_mtime_ns == stat.st_mtime_ns
    digests = WeightsDigests(cache)
    new = digests.sha256(weights)
    assert digests.hashed == 1 and new != old
    assert new == hashlib.sha256(b"B" * 4096).hexdigest()


def test_replaced_file_is_rehashed(tmp_path: Path, cache: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"first")
    WeightsDigests(cache).sha256(weights)
    _old_file(tmp_path / "new.pt", b"other")
    os.replace(tmp_path / "new.pt", weights)
    digests = WeightsDigests(cache)
    assert digests.sha256(weights) == hashlib.sha256(b"other").hexdigest()
    assert digests.hashed == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "not json",
        lambda text: json.dumps({"version": 99, "files": json.loads(text)["files"]}),
        lambda text: json.dumps({"version": 1, "files": []}),
        lambda text: json.dumps(
            {"version": 1, "files": dict.fromkeys(json.loads(text)["files"], "x")}
        ),
    ],
    ids=["truncated", "garbage", "other-version", "files-not-a-map", "entry-not-a-map"],
)
def test_damaged_cache_rehashes_to_the_right_digest(tmp_path: Path, cache: Path, damage) -> None:
    weights = _old_file(tmp_path / "w.pt", b"content")
    WeightsDigests(cache).sha256(weights)
    cache.write_text(damage(cache.read_text()))
    digests = WeightsDigests(cache)
    assert digests.sha256(weights) == hashlib.sha256(b"content").hexdigest()
    assert digests.hashed == 1
    assert WeightsDigests(cache).sha256(weights) == hashlib.sha256(b"content").hexdigest()


def test_entry_with_a_wrong_digest_is_not_trusted(tmp_path: Path, cache: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"content")
    WeightsDigests(cache).sha256(weights)
    data = json.loads(cache.read_text())
    entry = data["files"][str(weights.resolve())]
    entry["sha256"] = hashlib.sha256(b"something else").hexdigest()
    cache.write_text(json.dumps(data))
    digests = WeightsDigests(cache)
    assert digests.sha256(weights) == hashlib.sha256(b"content").hexdigest()
    assert digests.hashed == 1


def test_recently_modified_file_is_not_remembered(tmp_path: Path, cache: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"fresh")
    assert time.time() - weights.stat().st_mtime < RACY_SECONDS
    digests = WeightsDigests(cache)
    assert digests.sha256(weights) == hashlib.sha256(b"fresh").hexdigest()
    assert not cache.exists()
    digests.sha256(weights)
    assert digests.hashed == 2


def test_unwritable_cache_still_gives_the_digest(tmp_path: Path) -> None:
    weights = _old_file(tmp_path / "w.pt", b"content")
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    digests = WeightsDigests(blocker / "cache" / "weights_sha256.json")
    assert digests.sha256(weights) == hashlib.sha256(b"content").hexdigest()
    assert WeightsDigests(None).sha256(weights) == hashlib.sha256(b"content").hexdigest()
