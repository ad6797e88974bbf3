"""External spaces (brain ROI patterns, human ratings, other embeddings) from Parquet or CSV
files keyed by ``concept`` (an id, or the exact name of one concept; ``wnid`` is accepted as
the column's older name), or, at the image level, by ``stimulus`` (the id of a registered
image; see :mod:`semwh.ingest.stimuli`)."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from semwh.analyze.design import check_level
from semwh.errors import DuplicateError, InputError
from semwh.hashing import sha256_file
from semwh.ingest.concepts import registry_keys
from semwh.ingest.files import MAX_TEXT_BYTES, csv_errors, csv_rows, regular_size
from semwh.ingest.formats import read_utf8_text
from semwh.ingest.keys import KEY_COLUMNS, ConceptKeys, key_column
from semwh.ingest.sources import (
    REPAIRED,
    UNCHANGED,
    SourceSpec,
    drop_space,
    is_current,
    record_source,
)
from semwh.ingest.stimuli import (
    CONCEPT_LEVEL,
    IMAGE_ID,
    IMAGE_LEVEL,
    STIMULUS,
    check_level_change,
    check_noted_concepts,
    check_noted_image_ids,
    image_content,
    match_stimuli,
    write_images,
)
from semwh.names import check_name
from semwh.vectors import prepare_space, register_space, version_swap
from semwh.vectors.store import concept_means, register_space_images, space_files_intact
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Source, Space


@dataclass
class SpaceIngestReport:
    """The stored space and what the ingest did (status: created, unchanged, new version)."""

    space: Space
    status: str
    version: int
    previous_version: int | None
    source_id: int
    key: str
    seconds: float = 0.0
    #: ``concept``, or ``image``: per-image rows (``n_stimuli`` of them) and their concept
    #: means were stored.
    level: str = CONCEPT_LEVEL
    n_stimuli: int | None = None

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def dim(self) -> int:
        return self.space.dim

    @property
    def n_concepts(self) -> int:
        return self.space.n_concepts


@dataclass(frozen=True)
class _Rows:
    path: Path
    key: str
    keys: list[str]
    places: list[str]
    matrix: np.ndarray
    #: At the image level, the file's own ``concept`` column (checked against the
    #: registry's concept of each stimulus); None without one.
    noted: list[str] | None = None
    #: At the image level, the file's own ``image_id`` column (checked likewise).
    noted_ids: list[str] | None = None


def _parse_vector_text(text: str, place: str) -> list[float]:
    text = text.strip()
    try:
        if text.startswith("["):
            values = json.loads(text)
        else:
            values = [float(v) for v in text.replace(";", " ").split()]
        return [float(v) for v in values]
    except (ValueError, TypeError) as exc:
        raise InputError(f"{place}: vector {text[:40]!r} is not a list of numbers") from exc


def _stack(vectors: list[list[float]], places: list[str], path: Path) -> np.ndarray:
    if not vectors:
        raise InputError(f"{path}: the file has no rows")
    dim = len(vectors[0])
    for vector, place in zip(vectors, places, strict=True):
        if len(vector) != dim:
            raise InputError(f"{place}: vector of length {len(vector)}, expected {dim}")
    if dim == 0:
        raise InputError(f"{places[0]}: empty vector")
    return np.asarray(vectors, dtype=np.float64)


def _key_of(columns: list[str], level: str) -> str | None:
    """The key column: ``stimulus`` at the image level, else ``concept`` (or ``wnid``)."""
    if level == IMAGE_LEVEL:
        return STIMULUS if STIMULUS in columns else None
    return key_column(columns)


def _no_key(columns: list[str], level: str) -> str:
    if level == IMAGE_LEVEL:
        return (
            f"no key column 'stimulus' (the stimulus ids of the registered images) in "
            f"{columns}; a file keyed by concept is ingested without --level image"
        )
    hint = (
        "; a file keyed by stimulus is ingested with --level image" if STIMULUS in columns else ""
    )
    return f"no key column (concept, or wnid) in {columns}{hint}"


def _not_features(level: str) -> tuple[str, ...]:
    """Columns that are never features: the key columns (at the image level a concept
    column is the lab's note and image_id the warehouse's id of the image, each checked
    against the registry's for its stimulus)."""
    return (*KEY_COLUMNS, STIMULUS, IMAGE_ID) if level == IMAGE_LEVEL else KEY_COLUMNS


def _read_csv(path: Path, level: str = CONCEPT_LEVEL) -> _Rows:
    text = read_utf8_text(path, "space file")
    reader = csv.reader(io.StringIO(text))
    with csv_errors(path, reader):
        header = next(reader, None)
    if not header:
        raise InputError(f"{path}: the file is empty")
    header = [h.strip() for h in header]
    key = _key_of(header, level)
    if key is None:
        raise InputError(f"{path} line 1: {_no_key(header, level)}")
    key_at = header.index(key)
    skip = _not_features(level)
    features = [i for i, h in enumerate(header) if i != key_at and h not in skip]
    use_vector = "vector" in header
    if not features:
        raise InputError(f"{path} line 1: no vector or numeric feature columns")
    keys, places, vectors = [], [], []
    note_rows: list[list[str]] = []
    for row in csv_rows(path, reader):
        if not any(cell.strip() for cell in row):
            continue
        place = f"{path} line {reader.line_num}"
        if len(row) != len(header):
            raise InputError(f"{place}: {len(row)} fields, the header has {len(header)}")
        keys.append(row[key_at].strip())
        places.append(place)
        note_rows.append(row)
        if use_vector:
            vectors.append(_parse_vector_text(row[header.index("vector")], place))
            continue
        values = []
        for i in features:
            try:
                values.append(float(row[i]))
            except ValueError as exc:
                raise InputError(
                    f"{place}: column {header[i]!r} value {row[i]!r} is not a number"
                ) from exc
        vectors.append(values)
    noted = noted_ids = None
    if level == IMAGE_LEVEL and "concept" in header:
        at = header.index("concept")
        noted = [row[at] for row in note_rows]
    if level == IMAGE_LEVEL and IMAGE_ID in header:
        at = header.index(IMAGE_ID)
        noted_ids = [row[at] for row in note_rows]
    return _Rows(path, key, keys, places, _stack(vectors, places, path), noted, noted_ids)


def _read_parquet(path: Path, level: str = CONCEPT_LEVEL) -> _Rows:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    key = _key_of(table.column_names, level)
    if key is None:
        raise InputError(f"{path}: {_no_key(table.column_names, level)}")
    if table.num_rows == 0:
        raise InputError(f"{path}: the file has no rows")
    keys = [("" if k is None else str(k)).strip() for k in table.column(key).to_pylist()]
    places = [f"{path} row {i}" for i in range(table.num_rows)]
    noted = noted_ids = None
    if level == IMAGE_LEVEL and "concept" in table.column_names:
        noted = ["" if v is None else str(v) for v in table.column("concept").to_pylist()]
    if level == IMAGE_LEVEL and IMAGE_ID in table.column_names:
        noted_ids = ["" if v is None else str(v) for v in table.column(IMAGE_ID).to_pylist()]
    if "vector" in table.column_names:
        column = table.column("vector")
        if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
            raise InputError(
                f"{path}: column 'vector' is {column.type}, expected a list of numbers"
            )
        item = column.type.value_type
        if not (pa.types.is_integer(item) or pa.types.is_floating(item)):
            raise InputError(
                f"{path}: column 'vector' holds lists of {item}, expected lists of numbers"
            )
        vectors = column.to_pylist()
        for vector, place in zip(vectors, places, strict=True):
            if vector is None or any(v is None for v in vector):
                raise InputError(f"{place}: missing values in the vector")
        return _Rows(path, key, keys, places, _stack(vectors, places, path), noted, noted_ids)
    names = [n for n in table.column_names if n != key and n not in _not_features(level)]
    if not names:
        raise InputError(f"{path}: no vector or numeric feature columns")
    columns = []
    for name in names:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise InputError(f"{path}: feature column {name!r} is {column.type}, not numeric")
        if column.null_count:
            row = column.to_pylist().index(None)
            raise InputError(f"{places[row]}: column {name!r} is empty")
        columns.append(column.to_numpy().astype(np.float64))
    return _Rows(path, key, keys, places, np.column_stack(columns), noted, noted_ids)


def read_space_file(path: Path, level: str = CONCEPT_LEVEL) -> _Rows:
    """The rows of a space file: keys (concepts, or stimuli at the image level), where each
    was read, and the vectors."""
    suffix = path.suffix.lower()
    if regular_size(path, "space file", MAX_TEXT_BYTES) == 0:
        raise InputError(f"{path}: the file is empty")
    if suffix == ".parquet":
        return _read_parquet(path, level)
    if suffix in (".csv", ".txt"):
        return _read_csv(path, level)
    raise InputError(f"{path}: unknown space file type {suffix!r} (use .parquet or .csv)")


def resolve_keys(rows: _Rows, keys: ConceptKeys) -> list[str]:
    """The concept id of every row, by the one rule of keys (the id, else the exact name or
    WordNet id of one concept); unknown keys are reported together with their nearest ids,
    and a concept given twice names both lines."""
    match = keys.match(zip(rows.keys, rows.places, strict=True), f"space file {rows.path}")
    match.raise_unknown()
    match.check_unique()
    _check_finite(rows)
    return match.resolved_ids


def _check_finite(rows: _Rows) -> None:
    bad = ~np.isfinite(rows.matrix).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{rows.places[i]}: the vector of {rows.keys[i]!r} holds NaN or inf")


def ingest_space(
    wh: Warehouse,
    name: str,
    path: str | os.PathLike[str],
    replace: bool = False,
    level: str = CONCEPT_LEVEL,
) -> SpaceIngestReport:
    """Ingest an external space from Parquet or CSV, at the concept or the image level.

    At the concept level the key column is ``concept`` (or ``wnid``): a concept's id, else
    the exact name or WordNet id of one concept. At the image level it is ``stimulus``, the
    id of a registered image: the per-image rows are stored (sorted by stimulus, each with
    its image's concept) together with their concept means, which are the space's concept
    level. The vectors are one list column ``vector`` (in CSV a JSON list or space-separated
    numbers) or all other columns as numeric features. A changed file under the same name
    becomes the space's next version.

    Args:
        wh: The warehouse.
        name: The space's name.
        path: The file.
        replace: Allow taking over a name that is a word or layer space, or storing a space
            at another level than it was ingested at.
        level: ``concept`` or ``image``.

    Raises:
        InputError: Malformed file, unknown or repeated keys, NaN or inf (nothing stored).
        DuplicateError: ``name`` is a space of another kind, or of the same kind at another
            level, and ``replace`` is false.
    """
    started = time.perf_counter()
    check_name(name, "space")
    image = check_level(level) == IMAGE_LEVEL
    file = Path(path).expanduser().resolve()
    rows = read_space_file(file, level)
    with wh.session() as session:
        existing = session.scalar(select(Space).where(Space.name == name))
        if existing is not None and existing.kind != "external" and not replace:
            raise DuplicateError(
                f"space {name!r} already exists as a {existing.kind} space; choose another "
                "name or pass replace=True (--replace)"
            )
        check_level_change(session, existing, level, replace)
        if image:
            stimuli = match_stimuli(session, rows.keys, rows.places, f"space file {file}")
            if rows.noted is not None:
                check_noted_concepts(
                    session, stimuli, rows.noted, rows.places, f"space file {file}"
                )
            if rows.noted_ids is not None:
                check_noted_image_ids(stimuli, rows.noted_ids, rows.places, f"space file {file}")
        else:
            keys = registry_keys(session)
    digest: str | None = None
    if image:
        _check_finite(rows)
        matrix = rows.matrix[stimuli.order]
        # From the float32 values stored, so they equal the image level's means as read back.
        concept_ids, vectors = concept_means(stimuli.concepts, matrix.astype(np.float32))
        digest = image_content(stimuli, matrix)
    else:
        concept_ids, vectors = resolve_keys(rows, keys), rows.matrix
    spec = SourceSpec(
        kind="space",
        name=name,
        path=str(file),
        sha256=sha256_file(file),
        size_bytes=file.stat().st_size,
        format=file.suffix.lower().lstrip("."),
        options={"key": rows.key, **({"level": IMAGE_LEVEL} if image else {})},
    )

    def report(
        space: Space, status: str, source: Source, previous: int | None
    ) -> SpaceIngestReport:
        return SpaceIngestReport(
            space,
            status,
            source.version,
            previous,
            source.source_id,
            rows.key,
            time.perf_counter() - started,
            level,
            len(stimuli.stimuli) if image else None,
        )

    with wh.session() as session:
        current = is_current(session, spec)
        unchanged = (
            current is not None and existing is not None and existing.source_id == current.source_id
        )
    kinds = ("concepts", "images") if image else ("concepts",)
    # An unchanged source whose stored files are damaged is ingested again: that rewrites them.
    if (
        unchanged
        and current is not None
        and existing is not None
        and space_files_intact(wh, existing.space_id, kinds)
    ):
        return report(existing, UNCHANGED, current, current.version)
    # The new version is written and validated first, then swapped in with its source row
    # in one transaction: a failure or a kill before the commit leaves the previous version
    # in force and no new ``sources`` row (an unregistered file is invisible to readers).
    metadata = {"source": str(file), "source_sha256": spec.sha256}
    prepared = prepare_space(
        wh, name, "external", concept_ids, vectors, metadata=metadata, content=digest
    )
    per_image = (
        write_images(wh, name, stimuli, matrix, prepared.digest, metadata) if image else None
    )
    if existing is not None and existing.kind != "external":
        # Taking over a word or layer space's name (replace=True) drops that space first.
        drop_space(wh, name)
    with version_swap(wh) as session:
        source, status, previous = record_source(session, spec)
        space = register_space(session, prepared, source_id=source.source_id, replace=True)
        # The per-image rows in place of the previous version's (none at the concept level).
        register_space_images(session, space, per_image)
    if unchanged and status == UNCHANGED:
        status = REPAIRED  # the same source again, to rewrite its damaged file
    return report(space, status, source, previous)
