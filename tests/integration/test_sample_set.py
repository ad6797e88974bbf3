"""The demo's sample set: the real fetch code against a loopback HTTP server that serves the
sample photos in place, with a manifest the test writes (the shipped manifest lists the
original files, whose bytes differ from the resized photos here)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from semwh.config import load_settings
from semwh.errors import ConfigError, InputError
from semwh.hashing import sha256_file
from semwh.workflow.demo import demo_samples
from semwh.workflow.sample_set import (
    PART_SUFFIX,
    fetch_samples,
    packaged_manifest,
    read_manifest,
    sample_folder,
)
from tests.sampleserver import SampleServer, write_manifest

pytestmark = pytest.mark.integration

N_FILES = 8


@pytest.fixture
def files(samples_dir: Path) -> list[Path]:
    return sorted(samples_dir.glob("*.jpg"))[:N_FILES]


@pytest.fixture
def server(files: list[Path]) -> Iterator[SampleServer]:
    srv = SampleServer(files[0].parent)
    yield srv
    srv.stop()


@pytest.fixture
def manifest(files: list[Path], tmp_path: Path) -> Path:
    return write_manifest(files, tmp_path / "manifest.csv")


def assert_complete(folder: Path, files: list[Path]) -> None:
    """Exactly the manifest's files, each byte-identical to its source; nothing partial."""
    assert sorted(p.name for p in folder.glob("*.jpg")) == [f.name for f in files]
    assert not list(folder.glob(f"*{PART_SUFFIX}"))
    for file in files:
        assert sha256_file(folder / file.name) == sha256_file(file)


def test_fetch_then_second_run_downloads_nothing(server, files, manifest, tmp_path) -> None:
    folder = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    summary = fetch_samples(
        folder, manifest, server.url, progress=lambda _, d, t: seen.append((d, t))
    )
    assert_complete(folder, files)
    assert (summary.n_downloaded, summary.n_present) == (N_FILES, 0)
    total = sum(f.stat().st_size for f in files)
    assert summary.bytes_downloaded == total
    assert seen[-1] == (total, total)
    assert sorted(server.names_requested()) == sorted(f.name for f in files)

    server.requests.clear()
    again = fetch_samples(folder, manifest, server.url)
    assert (again.n_downloaded, again.n_present, again.bytes_downloaded) == (0, N_FILES, 0)
    assert server.requests == []


def test_a_corrupted_file_on_disk_is_fetched_again(server, files, manifest, tmp_path) -> None:
    folder = tmp_path / "cache"
    fetch_samples(folder, manifest, server.url)
    victim = folder / files[3].name
    victim.write_bytes(b"\0" * victim.stat().st_size)  # same size, other bytes
    (folder / files[5].name).unlink()
    server.requests.clear()
    summary = fetch_samples(folder, manifest, server.url)
    assert summary.n_downloaded == 2
    assert sorted(server.names_requested()) == sorted([files[3].name, files[5].name])
    assert_complete(folder, files)


def test_corrupted_transfers_are_retried_and_a_bad_source_is_named(
    server, files, manifest, tmp_path
) -> None:
    folder = tmp_path / "cache"
    server.faults.corrupt[files[1].name] = 2  # two bad responses, then good bytes
    server.faults.always_corrupt.add(files[6].name)
    with pytest.raises(ConfigError) as info:
        fetch_samples(folder, manifest, server.url)
    message = str(info.value)
    assert "\n" not in message
    assert files[6].name in message and "SHA-256 does not match" in message
    assert "1 of 8 sample files are missing" in message
    assert "--images DIR" in message and str(folder) in message
    # Every other file is in place and verified; the bad one is not there under its name.
    assert not (folder / files[6].name).exists()
    assert sorted(server.names_requested()).count(files[1].name) == 3

    server.faults.always_corrupt.clear()
    server.requests.clear()
    fetch_samples(folder, manifest, server.url)
    assert server.names_requested() == [files[6].name]
    assert_complete(folder, files)


def test_a_dropped_connection_resumes_with_a_range_request(
    server, files, manifest, tmp_path
) -> None:
    folder = tmp_path / "cache"
    name = files[2].name
    server.faults.drop[name] = 1
    fetch_samples(folder, manifest, server.url)
    ranges = [r for n, r in server.requests if n == name]
    half = files[2].stat().st_size // 2
    assert ranges == [None, f"bytes={half}-"]
    assert_complete(folder, files)


def test_a_server_that_stops_leaves_a_resumable_cache(files, manifest, tmp_path) -> None:
    folder = tmp_path / "cache"
    server = SampleServer(files[0].parent)
    server.faults.drop[files[4].name] = 1
    url = server.url
    fetch_samples(folder, manifest, url)  # a first complete fetch, for the byte counts
    (folder / files[4].name).unlink()
    (folder / files[7].name).unlink()
    # A half-written file is left as a killed fetch would leave it.
    half = files[7].read_bytes()[: files[7].stat().st_size // 2]
    (folder / (files[7].name + PART_SUFFIX)).write_bytes(half)
    server.stop()
    with pytest.raises(ConfigError, match=r"could not download .*2 of 8 sample files"):
        fetch_samples(folder, manifest, url)
    assert (folder / (files[7].name + PART_SUFFIX)).read_bytes() == half

    restarted = SampleServer(files[0].parent)
    try:
        fetch_samples(folder, manifest, restarted.url)
        assert dict(restarted.requests)[files[7].name] == f"bytes={len(half)}-"
    finally:
        restarted.stop()
    assert_complete(folder, files)


def test_demo_fetches_when_no_folder_is_found(server, files, manifest, tmp_path) -> None:
    env = {
        "SEMWH_SAMPLES_URL": server.url,
        "SEMWH_SAMPLES_MANIFEST": str(manifest),
        "SEMWH_CACHE": str(tmp_path / "cache"),
    }
    settings = load_settings(tmp_path / "wh", environ=env)
    away = tmp_path / "away" / "checkout"
    away.mkdir(parents=True)
    folder = demo_samples(None, settings, cwd=away, source_root=away)
    assert folder == sample_folder(tmp_path / "cache", manifest)
    assert_complete(folder, files)
    # An image folder named explicitly wins and fetches nothing.
    server.requests.clear()
    assert demo_samples(files[0].parent, settings, cwd=away, source_root=away) == (
        files[0].parent.resolve()
    )
    assert server.requests == []


def test_demo_offline_says_what_to_fetch(manifest, tmp_path) -> None:
    """No server at the URL: one line naming the manifest, the URL pattern and the options."""
    env = {
        "SEMWH_SAMPLES_URL": "http://127.0.0.1:9/files/",
        "SEMWH_SAMPLES_MANIFEST": str(manifest),
        "SEMWH_CACHE": str(tmp_path / "cache"),
    }
    away = tmp_path / "away"
    away.mkdir()
    with pytest.raises(ConfigError) as info:
        demo_samples(None, load_settings(tmp_path / "wh", environ=env), cwd=away, source_root=away)
    message = str(info.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/files/<file>" in message and str(manifest) in message
    assert "8 of 8 sample files are missing" in message and "--images DIR" in message
    assert not (tmp_path / "wh").exists()


def test_shipped_manifest_lists_the_public_sample() -> None:
    entries = read_manifest(packaged_manifest())
    assert len(entries) == 1000 and len({e.name.split("_")[0] for e in entries}) == 200
    # 105.6 MB of original JPEGs, each listed once with its own hash.
    assert sum(e.size for e in entries) == 105_591_908
    assert len({e.sha256 for e in entries}) == 1000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name,size\n", "line 1 must be the header"),
        ("file,size,sha256\n../x.jpg,1," + "0" * 64 + "\n", "line 2: '../x.jpg' is not a plain"),
        ("file,size,sha256\na.jpg,ten," + "0" * 64 + "\n", "line 2: size 'ten'"),
        ("file,size,sha256\na.jpg,0," + "0" * 64 + "\n", "line 2: size '0' is not a positive"),
        ("file,size,sha256\na.jpg,1,abc\n", "line 2: 'abc' is not a SHA-256"),
        ("file,size,sha256\n", "lists no files"),
    ],
)
def test_bad_manifests_name_the_line(text: str, match: str, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        read_manifest(path)


def test_the_cache_folder_follows_xdg(tmp_path: Path, monkeypatch) -> None:
    from semwh.workflow.sample_set import default_cache_root

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "semwh"
    assert os.fspath(sample_folder(tmp_path, packaged_manifest())).startswith(str(tmp_path))


def test_links_in_the_cache_are_never_followed(server, files, manifest, tmp_path) -> None:
    """A link under a part's or a file's name is replaced, never written through or trusted."""
    folder = tmp_path / "cache"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    (folder / (files[0].name + PART_SUFFIX)).symlink_to(victim)
    (folder / files[1].name).symlink_to(files[1])  # the right bytes, but through a link
    summary = fetch_samples(folder, manifest, server.url)
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert summary.n_downloaded == N_FILES
    assert not any(p.is_symlink() for p in folder.iterdir())
    assert_complete(folder, files)


def test_a_folder_at_a_file_name_is_one_line(server, files, manifest, tmp_path) -> None:
    folder = tmp_path / "cache"
    (folder / files[2].name).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"is a folder where a sample file belongs: remove it"):
        fetch_samples(folder, manifest, server.url)
    assert server.requests == []
