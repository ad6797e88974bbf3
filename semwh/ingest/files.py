"""How ingest opens its input files: regular files only, bounded reads, one BOM rule.

Every reader of an input file (word-vector text, CSV spaces, manifests, mappings, concept
lists, images) goes through these helpers, so a FIFO, a device or a socket is refused with one
line instead of blocking or reading without end, a file over its declared limit is refused
before it is read, and a leading UTF-8 byte-order mark is dropped the same way everywhere.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from semwh.errors import InputError

BOM = b"\xef\xbb\xbf"
# Declared limits. A text input (CSV, manifest, mapping, concept list) is read whole.
MAX_TEXT_BYTES = 1 << 30
# An image is read whole to hash and decode it; camera RAWs and scans stay well below this.
MAX_IMAGE_BYTES = 256 << 20
# One line of a word-vector text file (a 300-d GloVe line is about 3 KB).
MAX_LINE_BYTES = 16 << 20


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def not_regular(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file (None: it is a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return f"is {file_kind(mode)}, not a regular file"


def regular_size(path: Path, what: str, limit: int | None = None) -> int:
    """The size of a regular input file.

    Raises:
        InputError: ``path`` is missing, not a regular file, or larger than ``limit``.
    """
    reason = not_regular(path)
    if reason is not None:
        raise InputError(f"{what} {path} {reason}")
    size = path.stat().st_size
    if limit is not None and size > limit:
        raise InputError(
            f"{what} {path} holds {size} bytes, over the limit of {limit} bytes for {what}s"
        )
    return size


def read_bytes(path: Path, what: str, limit: int = MAX_TEXT_BYTES) -> bytes:
    """A regular file's bytes, never more than ``limit`` (a file that grows is refused)."""
    regular_size(path, what, limit)
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{what} {path} grew past the limit of {limit} bytes while read")
    return data


def strip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte-order mark."""
    return data[len(BOM) :] if data.startswith(BOM) else data


def read_text_file(path: Path, what: str = "file", limit: int = MAX_TEXT_BYTES) -> str:
    """A whole regular text file as UTF-8, a leading byte-order mark dropped.

    Raises:
        InputError: Missing, not regular, over ``limit``, or not valid UTF-8 (names the line).
    """
    data = strip_bom(read_bytes(path, what, limit))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path} line {line}: not valid UTF-8 ({exc.reason})") from exc


@contextmanager
def csv_errors(path: Path, reader: Any) -> Iterator[None]:
    """Turn the csv module's errors (a cell over its size limit, a stray quote) into one line."""
    try:
        yield
    except csv.Error as exc:
        line = getattr(reader, "line_num", 0) or 1
        hint = ""
        if "field larger than field limit" in str(exc):
            hint = f" (cells are limited to {csv.field_size_limit()} bytes)"
        raise InputError(f"{path} line {line}: malformed CSV: {exc}{hint}") from exc


def csv_rows(path: Path, reader: Any) -> Iterator[Any]:
    """The rows of a csv reader, its errors as :class:`InputError` naming the line."""
    with csv_errors(path, reader):
        yield from reader
