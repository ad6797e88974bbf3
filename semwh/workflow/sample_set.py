"""The demo's public sample set: 1,000 ImageNet photos (5 for each of 200 concepts), fetched
once into the user's cache folder and checked file by file against a SHA-256 manifest that
ships inside the package.

A fetch resumes: verified files are kept, a partial file (``NAME.part``) continues with an
HTTP range request, and a file whose bytes do not match the manifest is fetched again. Only a
file that matches its manifest entry is renamed into place, so the folder never holds an
unverified image under its real name. One fetch at a time per folder (a lock file).
"""

from __future__ import annotations

import csv
import fcntl
import http.client
import io
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from semwh.errors import ConfigError, InputError
from semwh.hashing import sha256_file
from semwh.progress import Progress, check_progress

# The public sample behind the demo: a fixed commit of the repository that publishes it.
SAMPLE_COMMIT = "2e8718956e3bb046db9a8e488c2254fd9846b6c5"
DEFAULT_SAMPLES_URL = (
    f"https://raw.githubusercontent.com/ajschumacher/imagen/{SAMPLE_COMMIT}/imagen/"
)
MANIFEST_RESOURCE = "imagen-sample-manifest.csv"
MANIFEST_COLUMNS = ("file", "size", "sha256")
PART_SUFFIX = ".part"
LOCK_NAME = ".fetch.lock"
CHUNK_BYTES = 1 << 16
# Attempts per file: a dropped connection resumes, a corrupted transfer starts over.
ATTEMPTS = 4
WORKERS = 8
TIMEOUT_S = 30.0
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What a fetch tells its progress callable it is doing (the units are bytes).
FETCH = "sample images"


@dataclass(frozen=True)
class SampleFile:
    """One manifest entry: the file's name, its size in bytes and its SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchSummary:
    """What a fetch did: the folder, files already there, files downloaded, bytes moved."""

    folder: Path
    n_files: int
    n_present: int
    n_downloaded: int
    bytes_downloaded: int


def packaged_manifest() -> Path:
    """The manifest of the public sample, shipped inside the package."""
    return Path(str(resources.files("semwh.data").joinpath(MANIFEST_RESOURCE)))


def read_manifest(path: Path) -> list[SampleFile]:
    """Manifest rows ``file,size,sha256``; a bad row is an error naming its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read sample manifest {path}: {exc.strerror or exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != MANIFEST_COLUMNS:
        raise InputError(f"{path}: line 1 must be the header {','.join(MANIFEST_COLUMNS)}")
    entries: list[SampleFile] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != 3:
            raise InputError(f"{path}: line {line} has {len(row)} fields, expected 3")
        name, size, sha = (cell.strip() for cell in row)
        if not _SAFE_NAME.fullmatch(name) or name.endswith(PART_SUFFIX):
            raise InputError(f"{path}: line {line}: {name!r} is not a plain file name")
        if name in seen:
            raise InputError(f"{path}: line {line}: {name} is listed twice")
        if not size.isdigit() or int(size) == 0:
            raise InputError(f"{path}: line {line}: size {size!r} is not a positive byte count")
        if not _SHA256.fullmatch(sha.lower()):
            raise InputError(f"{path}: line {line}: {sha!r} is not a SHA-256 in hex")
        seen.add(name)
        entries.append(SampleFile(name, int(size), sha.lower()))
    if not entries:
        raise InputError(f"{path} lists no files")
    return entries


def sample_folder(cache_root: Path, manifest: Path) -> Path:
    """The cache folder of one manifest's files (a different manifest, a different folder)."""
    return cache_root / "samples" / f"imagen-{sha256_file(manifest)[:12]}"


def default_cache_root() -> Path:
    """The user's cache folder for semwh (platform conventions; XDG_CACHE_HOME on Linux)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("semwh", appauthor=False))


def _complete(path: Path, entry: SampleFile) -> bool:
    """``path`` is a regular file (not a link) with the manifest's size and hash."""
    try:
        if not _regular(path) or path.stat().st_size != entry.size:
            return False
    except OSError:
        return False
    return sha256_file(path) == entry.sha256


def _regular(path: Path) -> bool:
    """A regular file itself, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _clear(path: Path) -> None:
    """Remove a file or link at ``path`` (never following it); a folder is an error."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path} is a folder where a sample file belongs: remove it, then rerun")
    path.unlink()


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    with (folder / LOCK_NAME).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another semwh process is fetching the sample images into {folder}; "
                "wait for it to finish, then run again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Transfer:
    """Downloads of one fetch: the base URL, the progress counter and its lock."""

    def __init__(self, base_url: str, total: int, progress: Progress | None) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.total = total
        self.progress = progress
        self.done = 0
        self.reported = 0
        self.downloaded = 0
        self._lock = threading.Lock()

    def url(self, entry: SampleFile) -> str:
        return urllib.parse.urljoin(self.base_url, urllib.parse.quote(entry.name))

    def advance(self, n_bytes: int, *, fetched: bool) -> None:
        with self._lock:
            self.done += n_bytes
            if fetched and n_bytes > 0:
                self.downloaded += n_bytes
            # Bytes of a file fetched again are counted once: what is reported never goes back.
            self.reported = max(self.reported, self.done)
            if self.progress is not None:
                self.progress(FETCH, self.reported, self.total)

    def fetch(self, entry: SampleFile, folder: Path) -> None:
        """Bring ``entry`` into ``folder``, resuming and retrying; raise after ATTEMPTS."""
        final = folder / entry.name
        part = folder / (entry.name + PART_SUFFIX)
        counted = 0  # bytes of this file already added to the progress counter
        reason = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(min(0.2 * 2**attempt, 2.0))
            if not _regular(part):
                _clear(part)  # a link or other non-file under the part's name: start afresh
            offset = part.stat().st_size if _regular(part) else 0
            if offset > entry.size:
                part.unlink()
                offset = 0
            try:
                if offset < entry.size:
                    offset = self._download(entry, part, offset)
            except (OSError, http.client.HTTPException) as exc:
                reason = _describe(exc)
                continue
            finally:
                have = part.stat().st_size if _regular(part) else 0
                if have != counted:
                    self.advance(have - counted, fetched=True)
                    counted = have
            if offset < entry.size:  # the server closed early: resume from here
                reason = f"the transfer stopped at {offset} of {entry.size} bytes"
                continue
            if offset == entry.size and sha256_file(part) == entry.sha256:
                _clear(final)
                os.replace(part, final)
                return
            # Wrong bytes (more than the manifest says, or another hash): start over.
            reason = (
                f"received more than the manifest's {entry.size} bytes"
                if offset > entry.size
                else "its SHA-256 does not match the manifest"
            )
            part.unlink(missing_ok=True)
            self.advance(-counted, fetched=True)
            counted = 0
        raise ConfigError(f"could not download {entry.name} from {self.url(entry)}: {reason}")

    def _download(self, entry: SampleFile, part: Path, offset: int) -> int:
        """Append the file's bytes from ``offset`` to ``part``; return the new size."""
        request = urllib.request.Request(self.url(entry), headers={"User-Agent": "semwh"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # the part file is not a prefix the server knows: start over
                part.unlink(missing_ok=True)
            raise
        with response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the range: take the whole file
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if offset else os.O_TRUNC)
            with os.fdopen(os.open(part, flags, 0o644), "wb") as handle:
                handle.seek(offset)
                handle.truncate()
                while chunk := response.read(CHUNK_BYTES):
                    handle.write(chunk)
                    offset += len(chunk)
                    if offset > entry.size:
                        break
                handle.flush()
                os.fsync(handle.fileno())
        return offset


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the file was complete"
    return str(exc) or type(exc).__name__


def fetch_samples(
    folder: Path,
    manifest: Path,
    base_url: str,
    *,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> FetchSummary:
    """Make ``folder`` hold every file of ``manifest``, verified, downloading what is missing.

    Args:
        folder: Where the files go (created if missing).
        manifest: ``file,size,sha256`` rows.
        base_url: Each file is fetched from ``base_url + file``.
        progress: Told the bytes checked or fetched of all the manifest lists, as
            ``"sample images"``.
        workers: Files fetched at once.

    Raises:
        ConfigError: A file could not be fetched intact; the message names it, says where the
            files come from and what to pass instead. Verified files stay for the next run.
    """
    check_progress(progress)
    entries = read_manifest(manifest)
    folder.mkdir(parents=True, exist_ok=True)
    transfer = _Transfer(base_url, sum(e.size for e in entries), progress)
    with _folder_lock(folder):
        missing: list[SampleFile] = []
        for entry in entries:
            path = folder / entry.name
            if _complete(path, entry):
                transfer.advance(entry.size, fetched=False)
            else:
                _clear(path)
                missing.append(entry)
        failures: list[str] = []
        if missing:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for outcome in pool.map(lambda e: _attempt(transfer, e, folder), missing):
                    if outcome:
                        failures.append(outcome)
    if failures:
        n_bytes = sum(e.size for e in entries)
        raise ConfigError(
            f"{failures[0]} ({len(failures)} of {len(entries)} sample files are missing). "
            f"The demo's sample set is the {len(entries)} files ({n_bytes / 1e6:.1f} MB) "
            f"listed in {manifest}; fetch them from {transfer.base_url}<file> into {folder} "
            "(a rerun resumes), set SEMWH_SAMPLES_URL to a mirror, or pass --images DIR "
            "(or SEMWH_SAMPLES=DIR) for a folder of <wnid>_*.jpg photos you have."
        )
    return FetchSummary(
        folder=folder,
        n_files=len(entries),
        n_present=len(entries) - len(missing),
        n_downloaded=len(missing),
        bytes_downloaded=transfer.downloaded,
    )


def _attempt(transfer: _Transfer, entry: SampleFile, folder: Path) -> str | None:
    try:
        transfer.fetch(entry, folder)
    except ConfigError as exc:
        return str(exc)
    except OSError as exc:
        return f"could not write {folder / entry.name}: {exc.strerror or exc}"
    return None
