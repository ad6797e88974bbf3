"""Where a warehouse's Parquet files live: a local or shared folder, or an object-store prefix.

A vectors root is a folder path (``/mnt/lab/wh/vectors``) or a URI that
:func:`pyarrow.fs.FileSystem.from_uri` understands (``s3://bucket/prefix``,
``gs://bucket/prefix``, ``hdfs://…``, ``file:///…``). Options of the store travel in the URI's
query (``s3://bucket/wh?region=eu-west-1&endpoint_override=minio:9000&scheme=http``, and
``request_timeout`` / ``connect_timeout`` in seconds for slow S3-compatible stores); secrets
never do: they come from the usual environment of each store (``AWS_ACCESS_KEY_ID`` …,
``GOOGLE_APPLICATION_CREDENTIALS``) on every machine that reads or writes.

Writes are atomic on both kinds of root. On a folder, bytes go to a temporary file on the same
filesystem, are fsynced and renamed into place. On an object store, one upload creates the
object whole when it completes; a writer killed mid-upload leaves no object (only incomplete
multipart parts, which the bucket's lifecycle rules expire). Either way a file becomes visible
to readers only once the registry lists it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from semwh.errors import ConfigError, NotFoundError, ResourceError, SemwhError, WarehouseError
from semwh.testing.faults import fault_point

TMP_SUFFIX = ".parquet.tmp"
# Temporary files of a folder root that is not the warehouse's own ``vectors/`` live here:
# inside the root (so a rename never crosses filesystems), under a name Parquet dataset
# readers skip.
INNER_TMP_DIRNAME = "_tmp"
# Options of an s3:// URI that semwh reads itself (pyarrow's URI parser does not).
S3_TIMEOUTS = ("request_timeout", "connect_timeout")


def is_uri(location: str) -> bool:
    return "://" in location


@dataclass(frozen=True)
class VectorsRoot:
    """A vectors root and the filesystem that reaches it.

    Attributes:
        location: The folder (absolute) or URI, as configured; it is what users see.
        tmp_dir: Folder for temporary files of a folder root (None on an object store).
    """

    location: str
    tmp_dir: Path | None = None
    _fs: pafs.FileSystem | None = field(default=None, compare=False, repr=False)
    _base: str = field(default="", compare=False, repr=False)

    @classmethod
    def open(cls, location: str | os.PathLike[str], tmp_dir: Path | None = None) -> VectorsRoot:
        """Resolve ``location`` to a filesystem and a base path.

        Raises:
            ConfigError: The URI's scheme or options are not understood.
        """
        text = str(location)
        if not is_uri(text):
            folder = Path(text).expanduser().resolve()
            tmp = tmp_dir if tmp_dir is not None else folder / INNER_TMP_DIRNAME
            return cls(str(folder), tmp, pafs.LocalFileSystem(), folder.as_posix())
        fs, base = _filesystem_from_uri(text)
        if isinstance(fs, pafs.LocalFileSystem):
            return cls.open(base, tmp_dir)
        return cls(text, None, fs, base.rstrip("/"))

    def __reduce__(self) -> tuple[Any, ...]:
        # Workers on other machines rebuild the filesystem from the location (and their own
        # credentials) rather than receive this process's connection state.
        return (VectorsRoot.open, (self.location, self.tmp_dir))

    @property
    def fs(self) -> pafs.FileSystem:
        assert self._fs is not None, "use VectorsRoot.open"
        return self._fs

    @property
    def is_local(self) -> bool:
        return self.tmp_dir is not None

    def path(self, relpath: str) -> str:
        """The path of ``relpath`` inside the filesystem (what pyarrow calls take)."""
        return f"{self._base}/{relpath}"

    def local_path(self, relpath: str) -> Path:
        """The file of ``relpath`` on a folder root (raises on an object store)."""
        if not self.is_local:
            raise WarehouseError(f"{self.location} is an object store, not a folder")
        return Path(self._base) / relpath

    def show(self, relpath: str) -> str:
        """``relpath`` as users name it: a file path, or the URI of the object."""
        if self.is_local:
            return str(self.local_path(relpath))
        head = self.location.split("?", 1)[0].rstrip("/")
        return f"{head}/{relpath}"

    # -- checks --------------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the root if needed and check it can be reached.

        Raises:
            WarehouseError: The folder cannot be created or the store cannot be reached.
        """
        try:
            self.fs.create_dir(self._base, recursive=True)
            info = self.fs.get_file_info(self._base)
        except OSError as exc:
            raise WarehouseError(
                f"cannot reach the vectors root {self.location}: {str(exc).splitlines()[0]}"
            ) from exc
        if info.type == pafs.FileType.File:
            raise WarehouseError(f"the vectors root {self.location} is a file, not a folder")

    def exists(self, relpaths: Sequence[str]) -> list[bool]:
        """Whether each file exists (one listing call on an object store)."""
        if not relpaths:
            return []
        infos = self.fs.get_file_info([self.path(rel) for rel in relpaths])
        return [info.type == pafs.FileType.File for info in infos]

    def free_bytes(self) -> int | None:
        """Free space where the files go; None on an object store (no limit known)."""
        if not self.is_local:
            return None
        folder = Path(self._base)
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return shutil.disk_usage(folder).free

    def sizes(self, relpaths: Sequence[str]) -> list[int | None]:
        """The size of each file, None where it is missing (one listing call on a store)."""
        if not relpaths:
            return []
        infos = self.fs.get_file_info([self.path(rel) for rel in relpaths])
        return [int(i.size) if i.type == pafs.FileType.File else None for i in infos]

    def size(self, relpath: str) -> int:
        info = self.fs.get_file_info(self.path(relpath))
        if info.type != pafs.FileType.File:
            raise NotFoundError(f"vector file {self.show(relpath)} is missing")
        return int(info.size)

    # -- writing -------------------------------------------------------------------------------

    def write(self, relpath: str, data: pa.Buffer) -> None:
        """Store ``data`` as ``relpath`` atomically (see the module docstring).

        Raises:
            ResourceError: The disk is full.
            WarehouseError: The root is read-only or the write failed otherwise.
        """
        try:
            if self.is_local:
                self._write_local(relpath, data)
            else:
                fault_point("vectors.tmp_written")
                with self.fs.open_output_stream(self.path(relpath)) as out:
                    out.write(data)
                fault_point("vectors.renamed")
        except OSError as exc:
            # A full disk or read-only folder must say so and name the file, not leak a
            # traceback; nothing was registered, so the warehouse is unchanged.
            raise write_error(exc, self.show(relpath)) from exc

    def _write_local(self, relpath: str, data: pa.Buffer) -> None:
        assert self.tmp_dir is not None
        final = self.local_path(relpath)
        tmp = self.tmp_dir / tmp_name()
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as handle:
                handle.write(memoryview(data))
                handle.flush()
                os.fsync(handle.fileno())
            fault_point("vectors.tmp_written")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            fault_point("vectors.renamed")
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, relpath: str) -> None:
        """Remove a file if it is there."""
        try:
            self.fs.delete_file(self.path(relpath))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if self.exists([relpath]) == [True]:
                raise WarehouseError(
                    f"cannot remove {self.show(relpath)}: {str(exc).splitlines()[0]}"
                ) from exc

    # -- reading -------------------------------------------------------------------------------

    def read_table(
        self,
        relpath: str,
        *,
        schema: pa.Schema | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Read one Parquet file.

        Raises:
            NotFoundError: The file is missing.
        """
        try:
            return pq.read_table(
                self.path(relpath),
                filesystem=self.fs,
                schema=schema,
                columns=list(columns) if columns is not None else None,
            )
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"registered vector file {self.show(relpath)} is missing from the warehouse"
            ) from exc
        except OSError as exc:
            if self.exists([relpath]) == [False]:
                raise NotFoundError(
                    f"registered vector file {self.show(relpath)} is missing from the warehouse"
                ) from exc
            raise

    def read_bytes(self, relpath: str) -> pa.Buffer:
        """One stored file's bytes, whole (to hash and parse the very same bytes).

        Raises:
            NotFoundError: The file is missing.
        """
        try:
            with self.fs.open_input_file(self.path(relpath)) as handle:
                return handle.read_buffer()
        except FileNotFoundError as exc:
            raise NotFoundError(
                f"registered vector file {self.show(relpath)} is missing from the warehouse"
            ) from exc

    def read_metadata(self, relpath: str) -> dict[bytes, bytes]:
        """The Parquet key-value metadata of one file."""
        return dict(pq.read_schema(self.path(relpath), filesystem=self.fs).metadata or {})

    def sha256(self, relpath: str) -> str:
        """SHA-256 of a stored file's bytes, streamed."""
        digest = hashlib.sha256()
        with self.fs.open_input_stream(self.path(relpath)) as stream:
            while block := stream.read(1 << 22):
                digest.update(block)
        return digest.hexdigest()

    def dataset(self, relpaths: Sequence[str], schema: pa.Schema) -> Any:
        """A lazy Arrow dataset over the given files (what DuckDB scans for a remote root)."""
        import pyarrow.dataset as pads

        return pads.dataset(
            [self.path(rel) for rel in relpaths],
            schema=schema,
            format="parquet",
            filesystem=self.fs,
        )

    # -- temporary files -----------------------------------------------------------------------

    def remove_orphaned_tmp(self) -> int:
        """Remove temporary files whose writer on this host is gone (killed mid-write).

        Files of live processes and of other hosts (a shared folder on a cluster) are left
        alone; an object store has no temporary files.

        Returns:
            How many files were removed.
        """
        if self.tmp_dir is None or not self.tmp_dir.is_dir():
            return 0
        host = socket.gethostname()
        removed = 0
        for path in self.tmp_dir.glob(f"*{TMP_SUFFIX}"):
            parts = path.name.removesuffix(TMP_SUFFIX).rsplit(".", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue
            if not pid_alive(int(parts[1])):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def clean_tmp(self) -> int:
        """Remove every temporary file (no writer may be running); returns how many."""
        if self.tmp_dir is None or not self.tmp_dir.is_dir():
            return 0
        removed = 0
        for path in self.tmp_dir.glob("*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed


def _filesystem_from_uri(text: str) -> tuple[pafs.FileSystem, str]:
    """``FileSystem.from_uri``, plus the S3 timeouts it does not read from a URI.

    ``request_timeout`` and ``connect_timeout`` (seconds) in the query of an ``s3://`` URI set
    the client's timeouts, for stores that answer slowly (the AWS SDK gives up after 3 s
    without a byte by default).

    Raises:
        ConfigError: The scheme, an option or a timeout is not understood.
    """
    parts = urlsplit(text)
    query = parse_qsl(parts.query, keep_blank_values=True)
    timeouts = {key: value for key, value in query if key in S3_TIMEOUTS}
    rest = urlencode([(key, value) for key, value in query if key not in S3_TIMEOUTS], safe=":")
    try:
        fs, base = pafs.FileSystem.from_uri(urlunsplit(parts._replace(query=rest)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError) as exc:
        raise ConfigError(
            f"vectors location {text!r} is not a folder or a storage URI pyarrow can open "
            f"(s3://, gs://, hdfs://, file://): {str(exc).splitlines()[0]}"
        ) from exc
    if not timeouts:
        return fs, base
    if not isinstance(fs, pafs.S3FileSystem):
        raise ConfigError(
            f"vectors location {text!r}: {', '.join(timeouts)} is an option of s3:// URIs only"
        )
    try:
        seconds = {key: float(value) for key, value in timeouts.items()}
    except ValueError as exc:
        raise ConfigError(f"vectors location {text!r}: timeouts are seconds ({exc})") from exc
    # The filesystem's own constructor arguments (what it pickles as), with the timeouts set.
    _, (options,) = fs.__reduce__()
    return pafs.S3FileSystem(**{**options, **seconds}), base


def tmp_name() -> str:
    """A temporary file name that says which process on which host writes it."""
    return f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}{TMP_SUFFIX}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with ``pid`` is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_error(exc: OSError, where: str | Path) -> SemwhError:
    """A specific error for a failed write of ``where`` (full disk, read-only, other I/O)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceError(
            f"no space left on device while writing {where}: free some space and run the "
            "command again (completed work is kept)"
        )
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WarehouseError(
            f"the warehouse is not writable ({exc.strerror}) while writing {where}: check the "
            "folder's permissions or mount, or use another warehouse"
        )
    reason = exc.strerror or str(exc).splitlines()[0]
    return WarehouseError(f"cannot write {where}: {reason}")
