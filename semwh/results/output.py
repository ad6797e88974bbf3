"""Writing query results as a table, CSV, JSON or Parquet, and the rule for user output files.

Every file a user asks for (``sql --out``, ``query --out``, ``export``, ``report``) goes
through :func:`atomic_output`: it is written to a temporary file in the same folder and renamed
into place, never inside the warehouse folder, its registry or its vectors root (symlinks
resolved), and never over an existing file without ``force``.

Values keep their kind in CSV and JSON: integers stay integers (``SUM`` of integers is a
HUGEINT, which Arrow carries as a decimal of scale 0), and NaN and infinities stay distinct from
NULL. CSV writes NULL as an empty field and ``NaN``, ``inf``, ``-inf``; JSON writes ``null`` and
the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (JSON has no such numbers). Lists in a
CSV field are written as JSON text.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from semwh.errors import ConfigError, OutputError

FORMATS = ("table", "csv", "json", "parquet")
#: Rows per batch turned into Python values at a time by the CSV and JSON writers.
STREAM_ROWS = 65_536

_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_CSV_NONFINITE = {"nan": "NaN", "inf": "inf", "-inf": "-inf"}
_JSON_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _decimal(value: Decimal, exact_text: bool) -> Any:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(value)  # scale 0: an integer (SUM and other HUGEINT results)
    if not value.is_finite():
        return float(value)
    return str(value) if exact_text else float(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        value = _decimal(value, exact_text=False)
    if isinstance(value, float) and not math.isfinite(value):
        return _JSON_NONFINITE[repr(value)]
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return _decimal(value, exact_text=True)
    if isinstance(value, float) and not math.isfinite(value):
        return _CSV_NONFINITE[repr(value)]
    if isinstance(value, list | tuple | dict):
        return json.dumps(_json_value(value), default=str)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def csv_lines(
    batches: Iterable[pa.RecordBatch | pa.Table], columns: Sequence[str]
) -> Iterator[str]:
    """CSV text (header first) of the rows of ``batches``, one chunk per batch."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    yield buf.getvalue()
    for batch in batches:
        buf.seek(0)
        buf.truncate()
        for row in batch.to_pylist():
            writer.writerow([_csv_value(v) for v in row.values()])
        yield buf.getvalue()


def json_chunks(batches: Iterable[pa.RecordBatch | pa.Table]) -> Iterator[str]:
    """A JSON array of the rows of ``batches`` (the text of :func:`to_json`), one chunk per
    batch: only one batch of rows is ever held as Python objects."""
    first = True
    for batch in batches:
        parts = []
        for row in batch.to_pylist():
            values = {k: _json_value(v) for k, v in row.items()}
            text = json.dumps(values, indent=2, default=str, allow_nan=False)
            parts.append(("[\n  " if first else ",\n  ") + text.replace("\n", "\n  "))
            first = False
        if parts:
            yield "".join(parts)
    yield "[]" if first else "\n]"


def to_csv(table: pa.Table) -> str:
    return "".join(csv_lines(table.to_batches(STREAM_ROWS), table.column_names))


def to_json(table: pa.Table) -> str:
    return "".join(json_chunks(table.to_batches(STREAM_ROWS)))


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def check_output(path: Path, protected: Sequence[Path] = (), *, force: bool = False) -> Path:
    """The rule every user output file follows; returns the file to write (symlinks resolved).

    Raises:
        OutputError: ``path`` lies inside a protected folder or file (the warehouse, its
            registry, its vectors root), is a folder, sits below a file, or exists and
            ``force`` is false.
    """
    target = path.expanduser().resolve()
    for root in protected:
        resolved = Path(root).expanduser().resolve()
        if _inside(target, resolved):
            raise OutputError(
                f"refusing to write {path}: it is inside the warehouse ({root}), whose files "
                "only semwh commands change; choose a path outside it"
            )
    if target.is_dir():
        raise OutputError(f"{path} is a folder: give a file name, e.g. {path / 'result.csv'}")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    if target.exists() and not force:
        raise OutputError(f"{path} exists: pass --force to replace it")
    return target


def check_output_folder(
    folder: Path, protected: Sequence[Path] = (), *, force: bool = False
) -> Path:
    """The rule of :func:`check_output` for a folder of outputs (``semwh report``).

    Raises:
        OutputError: ``folder`` lies inside a protected path, is a file, or is a folder that
            already holds files and ``force`` is false.
    """
    target = folder.expanduser().resolve()
    for root in protected:
        if _inside(target, Path(root).expanduser().resolve()):
            raise OutputError(
                f"refusing to write into {folder}: it is inside the warehouse ({root}), whose "
                "files only semwh commands change; choose a folder outside it"
            )
    if target.exists() and not target.is_dir():
        raise OutputError(f"{folder} is a file: give a folder for the report")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputError(
            f"{folder} already holds files: pass --force to replace the report's files in it, "
            "or choose an empty or new folder"
        )
    return target


@contextmanager
def atomic_output(
    path: Path, protected: Sequence[Path] = (), *, force: bool = False
) -> Iterator[Path]:
    """A temporary file to write; renamed to ``path`` when the block succeeds.

    The temporary file lives in the destination's folder (so the rename is atomic) and is
    removed if the block fails. A missing folder is created. Without ``force`` the final
    step refuses to replace a file that appeared meanwhile.

    Raises:
        OutputError: See :func:`check_output`; also a folder that cannot be created or a
            write the operating system refuses.
    """
    target = check_output(path, protected, force=force)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the file exists: no overwrite, even racing
            except FileExistsError:
                raise OutputError(f"{path} exists: pass --force to replace it") from None
            except OSError:
                os.replace(tmp, target)  # a filesystem without hard links
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_batches(
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    fmt: str,
    out: Path,
    protected: Sequence[Path] = (),
    *,
    force: bool = False,
) -> int:
    """Write rows that arrive in record batches (from DuckDB's Arrow
    reader): each batch is written before the next is read. Returns the number of rows."""
    check_format(fmt)
    check_output(out, protected, force=force)  # where it goes is the first thing said
    if fmt == "table":
        fmt = _SUFFIX_FORMATS.get(out.suffix.lower(), "")
        if not fmt:
            raise ConfigError(
                f"cannot tell the format of {out}: pass --format csv, json or parquet"
            )
    rows = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal rows
        for batch in batches:
            rows += batch.num_rows
            yield batch

    with atomic_output(out, protected, force=force) as tmp:
        if fmt == "parquet":
            with pq.ParquetWriter(tmp, schema) as writer:
                for batch in counted():
                    writer.write_batch(batch)
        else:
            chunks = (
                csv_lines(counted(), schema.names)
                if fmt == "csv"
                else itertools.chain(json_chunks(counted()), ["\n"])
            )
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                handle.writelines(chunks)
    return rows


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    return fmt


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        inner = ", ".join(format_cell(v) for v in value[:4])
        return f"[{inner}{', …' if len(value) > 4 else ''}] ({len(value)})"
    return str(value)
