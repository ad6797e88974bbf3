"""Concept files: a lab's concepts with their ids, display names, WordNet ids and attributes.

CSV, TSV (or .txt with either separator) or Parquet with a header: the id column (``concept``
unless named), an optional ``name`` and ``wnid`` column, and any further columns kept as
attributes (category, concreteness, ...). The header-less form of earlier versions (one
WordNet id a line, optionally followed by a name after a tab, comma or space; ``#`` comments)
still reads: there the WordNet id is the concept id too. No database here; the ingest stores
what this returns.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semwh.errors import InputError
from semwh.ingest.files import MAX_TEXT_BYTES, csv_errors, csv_rows, read_text_file, regular_size
from semwh.ingest.keys import (
    ConceptKeys,
    default_name,
    normalise_concept_id,
    normalise_concept_name,
)
from semwh.ingest.wordnet import SYNSET_NAME_RE, WNID_RE

ID_COLUMN = "concept"
NAME_COLUMN = "name"
WNID_COLUMN = "wnid"
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
_LEGACY_SEPARATORS = ("\t", ",", " ")


@dataclass(frozen=True)
class ConceptRow:
    """One concept of a concept file.

    Attributes:
        concept: The id, as :func:`~semwh.ingest.keys.normalise_concept_id` stores it.
        name: The display name: the name column's value, else the id with ``_`` read as a
            space.
        wnid: The WordNet 3.0 noun id (``n`` and 8 digits), or None.
        attributes: Every other non-empty cell, column -> value (text in CSV/TSV files;
            str, int, float or bool from Parquet; dates as ISO 8601 text).
        line: The line in a text file (1-based), the row in a Parquet file (0-based, as
            pandas shows it).
        place: ``"FILE line N"`` or ``"FILE row N"``, for messages.
        name_given: Whether the file gave the name (False: the default above; the header-less
            form leaves names to ImageNet or WordNet where it gives none).
    """

    concept: str
    name: str
    wnid: str | None
    attributes: dict[str, Any]
    line: int
    place: str
    name_given: bool = True


@dataclass(frozen=True)
class ConceptTable:
    """The concepts of one file, in file order.

    Attributes:
        path: The file.
        format: ``"csv"``, ``"tsv"``, ``"parquet"`` or ``"wnids"`` (the header-less form).
        columns: The header as read (empty for the header-less form).
        id_column: The column the ids came from (None for the header-less form).
        name_column: The names' column, or None.
        wnid_column: The WordNet ids' column, or None.
        attribute_columns: The other columns, in file order.
        rows: One per concept.
    """

    path: Path
    format: str
    columns: tuple[str, ...]
    id_column: str | None
    name_column: str | None
    wnid_column: str | None
    attribute_columns: tuple[str, ...]
    rows: tuple[ConceptRow, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def concepts(self) -> list[str]:
        """The concept ids, in file order."""
        return [row.concept for row in self.rows]

    def keys(self) -> ConceptKeys:
        """These concepts as :class:`~semwh.ingest.keys.ConceptKeys` (id, name, wnid)."""
        return ConceptKeys((row.concept, row.name, row.wnid) for row in self.rows)


def read_concept_table(
    path: str | Path,
    *,
    id_column: str | None = None,
    name_column: str | None = None,
    wnid_column: str | None = None,
) -> ConceptTable:
    """Read a concept file (CSV, TSV, .txt, Parquet, or the header-less WordNet id list).

    Args:
        path: The file; ``.csv`` is comma-separated, ``.tsv`` tab-separated, ``.txt`` either
            (a tab in the first line means tabs), ``.parquet`` Parquet. UTF-8, a leading
            byte-order mark allowed.
        id_column: The column of concept ids (default ``concept``; a file without one but
            with a ``wnid`` column takes its ids from there).
        name_column: The column of display names (default ``name`` if present).
        wnid_column: The column of WordNet noun ids (default ``wnid`` if present). Without
            one, an id of the WordNet form is its own wnid.

    Raises:
        InputError: Unreadable file, no id column (the message lists the columns found), a
            column named by an option that the file lacks, a ragged row, a malformed id,
            name or wnid, or an id given twice (every message names the line or row).
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        regular_size(path, "concept file", MAX_TEXT_BYTES)
        return _read_parquet(path, id_column, name_column, wnid_column)
    if suffix not in TEXT_SUFFIXES:
        raise InputError(
            f"{path}: unknown concept file type {suffix or '(no suffix)'!r} (use .csv, .tsv, "
            ".txt or .parquet)"
        )
    text = read_text_file(path, "concept file")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next(
        (line for line in lines if line.strip() and not line.lstrip().startswith("#")), None
    )
    if first is None:
        what = "the file is empty" if not text.strip() else "the file holds no concepts"
        raise InputError(f"{path}: {what}")
    if _looks_legacy(first):
        if id_column or name_column or wnid_column:
            raise InputError(
                f"{path}: a list of WordNet ids without a header has no columns to choose; "
                "drop --id-column, --name-column and --wnid-column, or add a header line"
            )
        return _read_legacy(path, lines)
    separator = TEXT_SUFFIXES[suffix]
    if separator is None:
        separator = "\t" if "\t" in first else ","
    return _read_text(path, text, separator, id_column, name_column, wnid_column)


def _legacy_split(line: str) -> tuple[str, str]:
    for separator in _LEGACY_SEPARATORS:
        if separator in line:
            wnid, name = (part.strip() for part in line.split(separator, 1))
            return wnid, name
    return line, ""


def _looks_legacy(first: str) -> bool:
    return bool(WNID_RE.match(_legacy_split(first.strip())[0]))


def _read_legacy(path: Path, lines: list[str]) -> ConceptTable:
    rows: list[ConceptRow] = []
    seen: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        place = f"{path} line {number}"
        wnid, label = _legacy_split(line)
        _check_wnid(wnid, place, "")
        if wnid in seen:
            raise InputError(f"{place}: concept {wnid!r} appears again (first at {seen[wnid]})")
        seen[wnid] = place
        name = normalise_concept_name(default_name(label), place) if label else wnid
        rows.append(ConceptRow(wnid, name, wnid, {}, number, place, name_given=bool(label)))
    return ConceptTable(path, "wnids", (), None, None, None, (), tuple(rows))


def _check_wnid(value: str, place: str, column: str) -> str:
    """A WordNet id as given: ``n`` and 8 digits, or a noun synset's name (``aardvark.n.01``,
    THINGS' form), which the ingest turns into its id with WordNet."""
    if WNID_RE.match(value) or SYNSET_NAME_RE.match(value):
        return value
    where = f" in column {column!r}" if column else ""
    raise InputError(
        f"{place}: {value!r}{where} is not a WordNet 3.0 noun id (expected 'n' and 8 digits, "
        "e.g. n02084071, or a noun synset's name such as dog.n.01)"
    )


def _choose_columns(
    path: Path,
    header: list[str],
    id_column: str | None,
    name_column: str | None,
    wnid_column: str | None,
    where: str,
) -> tuple[str, str | None, str | None]:
    found = ", ".join(repr(h) for h in header)
    for option, value in (
        ("--id-column", id_column),
        ("--name-column", name_column),
        ("--wnid-column", wnid_column),
    ):
        if value is not None and value not in header:
            raise InputError(
                f"{path}{where}: no column {value!r} (given by {option}); the columns are {found}"
            )
    if id_column is None:
        if ID_COLUMN in header:
            id_column = ID_COLUMN
        elif WNID_COLUMN in header:
            id_column = WNID_COLUMN
        else:
            raise InputError(
                f"{path}{where}: no column {ID_COLUMN!r} with the concept ids (columns found: "
                f"{found}); name the id column with --id-column (and the names' and WordNet "
                "ids' with --name-column and --wnid-column)"
            )
    if name_column is None and NAME_COLUMN in header:
        name_column = NAME_COLUMN
    if wnid_column is None and WNID_COLUMN in header:
        wnid_column = WNID_COLUMN
    return id_column, name_column, wnid_column


def _read_text(
    path: Path,
    text: str,
    separator: str,
    id_column: str | None,
    name_column: str | None,
    wnid_column: str | None,
) -> ConceptTable:
    # Strict: an unclosed quote is an error rather than a cell that runs to the end.
    reader = csv.reader(io.StringIO(text), delimiter=separator, strict=True)
    header: list[str] | None = None
    with csv_errors(path, reader):
        for row in reader:
            if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#"):
                header = [cell.strip() for cell in row]
                break
    assert header is not None  # read_concept_table found a first line
    header_line = reader.line_num
    where = f" line {header_line}"
    for i, name in enumerate(header):
        if not name:
            raise InputError(f"{path}{where}: column {i + 1} of the header has no name")
        if header.index(name) != i:
            raise InputError(f"{path}{where}: column {name!r} appears twice in the header")
    id_column, name_column, wnid_column = _choose_columns(
        path, header, id_column, name_column, wnid_column, where
    )
    index = {name: i for i, name in enumerate(header)}
    special = {id_column, name_column, wnid_column}
    attributes = [(name, i) for name, i in index.items() if name not in special]
    builder = _Builder(path, "line", id_column, name_column, wnid_column)
    for row in csv_rows(path, reader):
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        place = f"{path} line {number}"
        if len(row) != len(header):
            raise InputError(
                f"{place}: {len(row)} fields, the header (line {header_line}) has {len(header)}"
            )
        name = row[index[name_column]] if name_column else ""
        wnid = row[index[wnid_column]].strip() if wnid_column else ""
        values = {column: row[i].strip() for column, i in attributes if row[i].strip()}
        builder.add(row[index[id_column]], name, wnid, values, number, place)
    fmt = "tsv" if separator == "\t" else "csv"
    return builder.table(fmt, header, [name for name, _ in attributes])


class _Builder:
    """Checks and collects the rows of a headed file (text or Parquet) in one way."""

    def __init__(
        self,
        path: Path,
        unit: str,
        id_column: str,
        name_column: str | None,
        wnid_column: str | None,
    ) -> None:
        self.path = path
        self.unit = unit
        self.id_column = id_column
        self.name_column = name_column
        self.wnid_column = wnid_column
        self.rows: list[ConceptRow] = []
        self.seen: dict[str, int] = {}

    def add(
        self,
        raw_id: object,
        raw_name: object,
        wnid: str,
        attributes: dict[str, Any],
        number: int,
        place: str,
    ) -> None:
        concept = normalise_concept_id(raw_id, place)
        if concept in self.seen:
            raise InputError(
                f"{place}: concept {concept!r} appears again (first at {self.unit} "
                f"{self.seen[concept]})"
            )
        self.seen[concept] = number
        given = isinstance(raw_name, str) and bool(raw_name.strip())
        name = normalise_concept_name(raw_name, place) if given else default_name(concept)
        if self.wnid_column is not None:
            wnid_value = _check_wnid(wnid, place, self.wnid_column) if wnid else None
        else:
            wnid_value = concept if WNID_RE.match(concept) else None
        self.rows.append(
            ConceptRow(concept, name, wnid_value, attributes, number, place, name_given=given)
        )

    def table(self, fmt: str, header: list[str], attribute_columns: list[str]) -> ConceptTable:
        if not self.rows:
            raise InputError(f"{self.path}: the file holds no concepts (only a header)")
        return ConceptTable(
            self.path,
            fmt,
            tuple(header),
            self.id_column,
            self.name_column,
            self.wnid_column,
            tuple(attribute_columns),
            tuple(self.rows),
        )


def _read_parquet(
    path: Path, id_column: str | None, name_column: str | None, wnid_column: str | None
) -> ConceptTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    header = list(table.column_names)
    for name in header:
        if header.count(name) > 1:
            raise InputError(f"{path}: column {name!r} appears twice")
    id_column, name_column, wnid_column = _choose_columns(
        path, header, id_column, name_column, wnid_column, ""
    )
    if table.num_rows == 0:
        raise InputError(f"{path}: the file holds no concepts (no rows)")
    types = {name: _value_type(table.schema.field(name).type) for name in header}
    id_type = types[id_column]
    if id_type not in ("string", "integer"):
        raise InputError(
            f"{path}: column {id_column!r} holds {table.schema.field(id_column).type}; concept "
            "ids are text (or integers)"
        )
    for column in (name_column, wnid_column):
        if column is not None and column != id_column and types[column] not in ("string", "null"):
            raise InputError(
                f"{path}: column {column!r} holds {table.schema.field(column).type}, not text"
            )
    special = {id_column, name_column, wnid_column}
    attribute_columns = [name for name in header if name not in special]
    for name in attribute_columns:
        if types[name] is None:
            raise InputError(
                f"{path}: column {name!r} holds {table.schema.field(name).type}; attribute "
                "columns hold text, numbers, booleans or dates"
            )
    data = {name: table.column(name).to_pylist() for name in header}
    ids = data[id_column]
    builder = _Builder(path, "row", id_column, name_column, wnid_column)
    for i in range(table.num_rows):
        place = f"{path} row {i}"
        raw_id = ids[i]
        if id_type == "integer" and raw_id is not None:
            raw_id = str(raw_id)
        if raw_id is None:
            raise InputError(f"{place}: empty concept id")
        name = data[name_column][i] if name_column else None
        wnid = data[wnid_column][i] if wnid_column else None
        wnid = wnid.strip() if isinstance(wnid, str) else ""
        values: dict[str, Any] = {}
        for column in attribute_columns:
            value = _attribute(data[column][i], place, column)
            if value is not None:
                values[column] = value
        builder.add(raw_id, name, wnid, values, i, place)
    return builder.table("parquet", header, attribute_columns)


def _value_type(kind: Any) -> str | None:
    """The kind of Python value a Parquet column gives, or None when not a scalar we keep."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind):
        return "null"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return "date"
    return None


def _attribute(value: Any, place: str, column: str) -> Any:
    """A Parquet cell as a JSON-able attribute value (None: an empty cell, omitted)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float):
        if math.isnan(value):  # pandas writes its missing numbers as NaN
            return None
        if math.isinf(value):
            raise InputError(f"{place}: column {column!r} is {value} (not a finite number)")
        return value
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    return value  # int or bool
