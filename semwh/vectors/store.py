"""The one Parquet reader, writer and registrar of the warehouse.

Every vector file has the columns ``space`` (string), ``concept`` (string), ``image_id`` (int64,
null for concept vectors) and ``vector`` (list<float32>) - ``VECTOR_FILE_SCHEMA``, defined in
:mod:`semwh.warehouse.views` beside the ``vectors`` view that reads them - carries a schema
version and its provenance in the Parquet key-value metadata, and is written atomically under
the warehouse's vectors root (a folder or an object-store prefix,
:mod:`semwh.warehouse.storage`). A file becomes visible to readers (and to the ``vectors`` SQL
view) only once it is registered in ``vector_files``, so a killed writer never leaves a
half-written file behind a query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from semwh.errors import (
    ConfigError,
    DuplicateError,
    InputError,
    NotFoundError,
    VectorFileError,
)
from semwh.names import check_name
from semwh.testing.faults import fault_point
from semwh.version import __version__
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Space, VectorFile
from semwh.warehouse.storage import write_error
from semwh.warehouse.views import KEY_COLUMNS, SCHEMA_VERSION, VECTOR_FILE_SCHEMA, file_schema

METADATA_KEY = b"semwh"

#: Kinds of the spaces that are layers of a model: a vision model's, a text model's.
LAYER_KINDS = ("layer", "text-layer")


@dataclass(frozen=True)
class VectorFileInfo:
    """A complete Parquet file under the vectors root, not yet registered."""

    relpath: str
    n_rows: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class SpaceVectors:
    """Concept vectors of one space, rows in ``concept_ids`` order (sorted by concept)."""

    name: str
    concept_ids: list[str]
    matrix: np.ndarray  # float64, n x d
    # The space's kind (layer, word, external, rdm); an ``rdm`` space holds, for each concept,
    # its rows of every subject's dissimilarity matrix side by side (columns in concept order).
    kind: str | None = None
    # An ``rdm`` space's subject ids, in the order of its matrices (None for other kinds).
    subjects: tuple[str, ...] | None = None
    # ``concept``, or ``image``: the rows are stimuli (``concept_ids`` holds stimulus ids,
    # sorted) and ``item_concepts`` each stimulus's concept.
    level: str = "concept"
    item_concepts: tuple[str, ...] | None = None
    # At the image level, each stimulus's image id (the key of ``images``).
    image_ids: tuple[int, ...] | None = None

    def subset(self, concept_ids: Sequence[str]) -> np.ndarray:
        index = {w: i for i, w in enumerate(self.concept_ids)}
        return self.matrix[[index[w] for w in concept_ids]]


@dataclass(frozen=True)
class ImageVectors:
    """Per-image vectors of one layer space, rows ordered by image_id."""

    space: str
    image_ids: np.ndarray  # int64
    concept_ids: list[str]
    matrix: np.ndarray  # float32, n x d


def _partition(key: str, value: str) -> str:
    return f"{key}={quote(value, safe='')}"


def space_relpath(name: str, content_sha256: str, kind: str = "concepts") -> str:
    """Where a space's concept vectors live, Hive-style, one file per content version; with
    ``kind="images"``, the per-image rows of a space ingested at the image level (a layer's
    per-image rows are its extraction's shards instead)."""
    folder = f"{_partition('kind', kind)}/{_partition('space', name)}"
    return f"{folder}/{content_sha256[:16]}.parquet"


def space_images_relpath(name: str, content_sha256: str) -> str:
    """Where the per-image rows of a space ingested at the image level live."""
    return space_relpath(name, content_sha256, "images")


def image_shard_relpath(model: str, layer: str, run_id: int, shard_index: int) -> str:
    """Where one shard of one layer's per-image vectors lives."""
    return (
        f"{_partition('kind', 'images')}/{_partition('model', model)}/"
        f"{_partition('layer', layer)}/run={run_id}/shard-{shard_index:05d}.parquet"
    )


def _as_matrix(vectors: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise InputError(f"vectors must be a 2-D matrix, got shape {matrix.shape}")
    return np.ascontiguousarray(matrix)


def vector_table(
    space: str,
    concept_ids: Sequence[str],
    vectors: np.ndarray,
    image_ids: Sequence[int] | np.ndarray | None = None,
) -> pa.Table:
    """Build the Arrow table of a vector file."""
    matrix = _as_matrix(vectors)
    n, d = matrix.shape
    if len(concept_ids) != n:
        raise InputError(f"{len(concept_ids)} concept_ids for {n} vectors in space {space!r}")
    flat = pa.array(matrix.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32), type=pa.int32())
    column = pa.ListArray.from_arrays(offsets, flat)
    ids = (
        pa.nulls(n, type=pa.int64())
        if image_ids is None
        else pa.array(np.asarray(image_ids, dtype=np.int64), type=pa.int64())
    )
    return pa.Table.from_arrays(
        [
            pa.array([space] * n, type=pa.string()),
            pa.array(list(concept_ids), type=pa.string()),
            ids,
            column,
        ],
        schema=VECTOR_FILE_SCHEMA,
    )


def write_vector_file(
    wh: Warehouse,
    relpath: str,
    space: str,
    concept_ids: Sequence[str],
    vectors: np.ndarray,
    image_ids: Sequence[int] | np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> VectorFileInfo:
    """Write a vector file atomically under the vectors root; does not register it.

    The file is encoded in memory, hashed, then stored in one step (a renamed temporary file
    on a folder, one upload on an object store): see :mod:`semwh.warehouse.storage`.
    """
    table = vector_table(space, concept_ids, vectors, image_ids)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "semwh_version": __version__,
        "space": space,
        **(metadata or {}),
    }
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=str)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    root = wh.vectors
    root.write(relpath, data)
    root.remove_orphaned_tmp()
    return VectorFileInfo(
        relpath=relpath,
        n_rows=table.num_rows,
        size_bytes=data.size,
        sha256=hashlib.sha256(memoryview(data)).hexdigest(),
    )


def remove_orphaned_tmp(wh: Warehouse) -> int:
    """Remove temporary files whose writer on this host is gone (killed mid-write).

    Every successful write calls this, so the leftovers of a crash disappear with the next
    good run of any command. Files of live processes and of other hosts (a shared warehouse
    on a cluster) are left alone.

    Returns:
        How many files were removed.
    """
    return wh.vectors.remove_orphaned_tmp()


def register_vector_file(
    session: Session,
    info: VectorFileInfo,
    kind: str,
    *,
    space_id: int | None = None,
    layer_id: int | None = None,
    run_id: int | None = None,
    shard_index: int | None = None,
) -> VectorFile:
    """Add the file's row to ``vector_files`` in the caller's transaction."""
    row = VectorFile(
        path=info.relpath,
        kind=kind,
        space_id=space_id,
        layer_id=layer_id,
        run_id=run_id,
        shard_index=shard_index,
        n_rows=info.n_rows,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        schema_version=SCHEMA_VERSION,
    )
    session.add(row)
    return row


def concept_means(concept_ids: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Mean vector of each concept's images (float64 accumulation), concepts sorted: the
    concept level of a layer (at extraction) and of a space ingested at the image level."""
    concepts = sorted(set(concept_ids))
    index = {w: i for i, w in enumerate(concepts)}
    rows = np.fromiter((index[w] for w in concept_ids), dtype=np.int64, count=len(concept_ids))
    sums = np.zeros((len(concepts), matrix.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, matrix.astype(np.float64))
    counts = np.bincount(rows, minlength=len(concepts)).astype(np.float64)
    return concepts, sums / counts[:, None]


def content_sha256(concept_ids: Sequence[str], matrix: np.ndarray) -> str:
    """Hash of a space's content: its concept ids and float32 vectors, in order."""
    digest = hashlib.sha256()
    digest.update("\n".join(concept_ids).encode())
    digest.update(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedSpace:
    """Validated, sorted concept vectors of a space whose file is written but not registered."""

    name: str
    kind: str
    concept_ids: list[str]
    matrix: np.ndarray
    digest: str
    info: VectorFileInfo


def real_matrix(name: str, vectors: Any) -> np.ndarray:
    """A space's vectors as a float32 n x d matrix of real numbers, n >= 1 and d >= 1.

    Raises:
        InputError: Complex, text or object values, not 2-D, or no concept or dimension.
    """
    raw = np.asarray(vectors)
    if raw.dtype.kind not in "biuf":
        raise InputError(
            f"space {name!r}: vectors must be real numbers, got an array of {raw.dtype} "
            "(complex, text or objects are not vectors)"
        )
    matrix = _as_matrix(raw)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise InputError(
            f"space {name!r}: {matrix.shape[0]} concepts x {matrix.shape[1]} dimensions; a "
            "space needs at least one concept and one dimension"
        )
    return matrix


def _validated(name: str, kind: str, concept_ids: Sequence[str], vectors: np.ndarray):  # noqa: ANN202
    check_name(name, "space", layer=kind in LAYER_KINDS)
    matrix = real_matrix(name, vectors)
    if len(concept_ids) != matrix.shape[0]:
        raise InputError(
            f"space {name!r}: {len(concept_ids)} concepts for {matrix.shape[0]} vectors "
            "(give one concept per row)"
        )
    order = sorted(range(len(concept_ids)), key=lambda i: concept_ids[i])
    sorted_ids = [concept_ids[i] for i in order]
    for a, b in zip(sorted_ids, sorted_ids[1:], strict=False):
        if a == b:
            raise InputError(f"space {name!r}: concept {a} appears more than once")
    matrix = matrix[order]
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        names = ", ".join(np.asarray(sorted_ids)[bad][:10])
        raise InputError(f"space {name!r}: non-finite values in the vectors of {names}")
    return sorted_ids, matrix, content_sha256(sorted_ids, matrix)


def prepare_space(
    wh: Warehouse,
    name: str,
    kind: str,
    concept_ids: Sequence[str],
    vectors: np.ndarray,
    *,
    metadata: dict[str, Any] | None = None,
    content: str | None = None,
) -> PreparedSpace:
    """Validate a space's concept vectors and write their file, without registering it.

    Callers that must register the space together with other rows (a word model and its
    tokens, say) do so with :func:`register_space` inside their own transaction, so a failure
    anywhere stores nothing.

    Args:
        content: The space's content hash when its concept vectors do not determine it (a
            space ingested at the image level: the hash of its per-image rows, which its
            concept means summarise). None: the hash of the concept vectors.

    Raises:
        InputError: Duplicate concept_ids or non-finite values.
    """
    sorted_ids, matrix, digest = _validated(name, kind, concept_ids, vectors)
    digest = content or digest
    info = write_vector_file(
        wh,
        space_relpath(name, digest),
        name,
        sorted_ids,
        matrix,
        metadata={"kind": kind, **(metadata or {})},
    )
    return PreparedSpace(name, kind, sorted_ids, matrix, digest, info)


def _stored_version(session: Session, name: str, digest: str, replace: bool) -> Space | None:
    """The stored space of this name; raises if its content differs and ``replace`` is false."""
    existing = session.scalar(select(Space).where(Space.name == name))
    if existing is not None and existing.content_sha256 != digest and not replace:
        raise DuplicateError(
            f"space {name!r} already exists with other vectors; pass replace=True "
            "(--replace) to store the new version"
        )
    return existing


def register_space(
    session: Session,
    prepared: PreparedSpace,
    *,
    model: str | None = None,
    layer: str | None = None,
    layer_id: int | None = None,
    word_model_id: int | None = None,
    source_id: int | None = None,
    depth_index: int | None = None,
    relative_depth: float | None = None,
    replace: bool = False,
) -> Space:
    """Register a prepared space and its file in the caller's transaction.

    Raises:
        DuplicateError: The name exists with other content and ``replace`` is false.
    """
    existing = _stored_version(session, prepared.name, prepared.digest, replace)
    if existing is not None and existing.content_sha256 == prepared.digest:
        _refresh_file_record(session, existing, prepared.info, layer_id)
        return existing
    fields = dict(
        kind=prepared.kind,
        model=model,
        layer=layer,
        layer_id=layer_id,
        word_model_id=word_model_id,
        source_id=source_id,
        depth_index=depth_index,
        relative_depth=relative_depth,
        dim=int(prepared.matrix.shape[1]),
        n_concepts=int(prepared.matrix.shape[0]),
        content_sha256=prepared.digest,
    )
    if existing is None:
        space = Space(name=prepared.name, **fields)
        session.add(space)
        session.flush()
    else:
        # A new version keeps the row (its id and its references): DuckDB cannot change a
        # foreign-key column of a row that vector files reference, so the swap changes only
        # the content columns and the file rows, all in the caller's one transaction. The
        # version in force is the newest ``sources`` row of the space's name.
        space = existing
        for key in ("source_id", "word_model_id", "layer_id"):
            if getattr(space, key) is not None:
                fields.pop(key)
        for key, value in fields.items():
            setattr(space, key, value)
        # Every file of the old version goes: its concept vectors, and per-image rows where
        # it was ingested at the image level (the caller registers the new version's).
        for old in session.scalars(
            select(VectorFile).where(VectorFile.space_id == space.space_id)
        ).all():
            session.delete(old)
        session.flush()
    register_vector_file(
        session, prepared.info, "concepts", space_id=space.space_id, layer_id=layer_id
    )
    return space


def _concept_files(session: Session, space_id: int) -> list[VectorFile]:
    """The rows of a space's concept file(s) in ``vector_files``."""
    return list(
        session.scalars(
            select(VectorFile).where(VectorFile.space_id == space_id, VectorFile.kind == "concepts")
        )
    )


def _refresh_file_record(
    session: Session, space: Space, info: VectorFileInfo, layer_id: int | None
) -> None:
    """Make the record of a space's file say what was just written at its path.

    The same content is written again at the same content-addressed path (a re-ingest that
    repairs a damaged file, say); its bytes can differ from the first write's by their
    metadata (another semwh version, another source path), so the record follows the file.
    """
    for row in _concept_files(session, space.space_id):
        if row.path == info.relpath:
            row.size_bytes, row.sha256, row.n_rows = info.size_bytes, info.sha256, info.n_rows
            return
    register_vector_file(
        session, info, "concepts", space_id=space.space_id, layer_id=layer_id or space.layer_id
    )


@contextmanager
def version_swap(wh: Warehouse) -> Iterator[Session]:
    """The one transaction that swaps spaces' new versions in (with their ``sources`` row).

    Its files are written before it opens (:func:`prepare_space`); it registers them
    (:func:`register_space`). A failure or a kill before the commit leaves the previous
    versions in force and no new ``sources`` row. An I/O error inside it (a full disk) becomes
    one line.
    """
    try:
        with wh.session() as session:
            yield session
            session.flush()
            fault_point("space.swapping")
    except OSError as exc:
        raise write_error(exc, wh.duckdb_path or "the registry") from exc


def space_files_intact(wh: Warehouse, space_id: int, kinds: Sequence[str] = ("concepts",)) -> bool:
    """Whether a space has file(s) of each of ``kinds`` registered under its id and each
    matches its record in size and SHA-256 (an "unchanged" re-ingest rewrites them when not).
    """
    with wh.session() as session:
        files = session.scalars(
            select(VectorFile).where(
                VectorFile.space_id == space_id, VectorFile.kind.in_(list(kinds))
            )
        ).all()
    return {f.kind for f in files} == set(kinds) and all(file_problem(wh, f) is None for f in files)


def register_space_images(session: Session, space: Space, info: VectorFileInfo | None) -> None:
    """Make ``info`` the per-image file of a space ingested at the image level, in the
    caller's transaction, in place of its previous one(s); None: the space keeps no per-image
    rows (a concept-level version replaces an image-level one)."""
    for old in session.scalars(
        select(VectorFile).where(VectorFile.space_id == space.space_id, VectorFile.kind == "images")
    ).all():
        if info is not None and old.path == info.relpath:
            # The same content again (a repair): the record follows the rewritten file.
            old.size_bytes, old.sha256, old.n_rows = info.size_bytes, info.sha256, info.n_rows
            info = None
        else:
            session.delete(old)
    session.flush()
    if info is not None:
        register_vector_file(session, info, "images", space_id=space.space_id)


def save_space(
    wh: Warehouse,
    name: str,
    kind: str,
    concept_ids: Sequence[str],
    vectors: np.ndarray,
    *,
    model: str | None = None,
    layer: str | None = None,
    layer_id: int | None = None,
    word_model_id: int | None = None,
    source_id: int | None = None,
    depth_index: int | None = None,
    relative_depth: float | None = None,
    replace: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Space:
    """Store the concept vectors of a space and register it, in one transaction.

    Rows are sorted by concept. The same content under the same name is a no-op; different
    content under an existing name raises unless ``replace`` is true.

    Raises:
        InputError: Duplicate concept_ids or non-finite values.
        DuplicateError: The name exists with other content and ``replace`` is false.
    """
    _, _, digest = _validated(name, kind, concept_ids, vectors)
    with wh.session() as session:
        existing = _stored_version(session, name, digest, replace)
    if (
        existing is not None
        and existing.content_sha256 == digest
        and space_files_intact(wh, existing.space_id)
    ):
        return existing
    prepared = prepare_space(
        wh,
        name,
        kind,
        concept_ids,
        vectors,
        metadata={"model": model, "layer": layer, **(metadata or {})},
    )
    with wh.session() as session:
        return register_space(
            session,
            prepared,
            model=model,
            layer=layer,
            layer_id=layer_id,
            word_model_id=word_model_id,
            source_id=source_id,
            depth_index=depth_index,
            relative_depth=relative_depth,
            replace=replace,
        )


#: What repairs a damaged vector file (the command names the rest: shards, spaces, sources).
REPAIR = "run `semwh repair` to rebuild it"


def file_problem(wh: Warehouse, file: VectorFile, *, full: bool = True) -> str | None:
    """What is wrong with a registered vector file (None: it matches its record).

    ``full`` re-hashes the file's bytes (SHA-256) and reads its row count; otherwise only its
    size is compared with the record (one stat).
    """
    root = wh.vectors
    try:
        size = root.size(file.path)
    except (OSError, NotFoundError):
        return "is registered but missing"
    if size != file.size_bytes:
        return f"holds {size} bytes, the registry records {file.size_bytes} (altered or truncated)"
    if not full:
        return None
    try:
        data = root.read_bytes(file.path)
    except (OSError, NotFoundError) as exc:
        return f"cannot be read ({str(exc).splitlines()[0]})"
    return _bytes_problem(file, data, parse=True)


def _bytes_problem(file: VectorFile, data: pa.Buffer, *, parse: bool) -> str | None:
    if data.size != file.size_bytes:
        return (
            f"holds {data.size} bytes, the registry records {file.size_bytes} "
            "(altered or truncated)"
        )
    digest = hashlib.sha256(memoryview(data)).hexdigest()
    if digest != file.sha256:
        return (
            f"has SHA-256 {digest[:12]}..., the registry records {file.sha256[:12]}... "
            "(altered since it was written)"
        )
    if parse:
        try:
            rows = pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            return f"is not readable Parquet ({str(exc).splitlines()[0]})"
        if file.n_rows is not None and rows != file.n_rows:
            return f"holds {rows} rows, the registry records {file.n_rows}"
    return None


def file_schema_of(file: VectorFile) -> pa.Schema:
    """The Parquet schema a registered file was written with (by its schema version)."""
    return file_schema(file.schema_version if file.schema_version in KEY_COLUMNS else 2)


def read_checked(
    wh: Warehouse, file: VectorFile, space: str, columns: Sequence[str] | None = None
) -> pa.Table:
    """Read one registered file after checking its bytes against the record.

    The bytes are read once, compared with the recorded size and SHA-256, and parsed from
    that same buffer: numbers are never taken from a file that differs from the one
    registered, and a file changed between a check and its read cannot slip through.

    Raises:
        VectorFileError: The file is missing, or its size, hash or row count differs from
            the record, or it cannot be parsed; the message names the file and the repair.
    """
    root = wh.vectors
    shown = root.show(file.path)
    where = f"vector file {shown} of space {space!r}"
    try:
        data = root.read_bytes(file.path)
    except NotFoundError as exc:
        raise VectorFileError(f"{where} is registered but missing: {REPAIR}") from exc
    except OSError as exc:
        raise VectorFileError(
            f"{where} cannot be read ({str(exc).splitlines()[0]}): {REPAIR}"
        ) from exc
    problem = _bytes_problem(file, data, parse=False)
    if problem is None:
        schema = file_schema_of(file)
        key = schema.names[1]  # the concept column, as this file's schema version names it
        stored = [key if c == "concept" else c for c in columns] if columns is not None else None
        try:
            table = pq.read_table(pa.BufferReader(data), schema=schema, columns=stored)
            table = table.rename_columns(["concept" if c == key else c for c in table.column_names])
        except (pa.ArrowException, OSError, ValueError) as exc:
            problem = f"cannot be read ({str(exc).splitlines()[0]})"
        else:
            if file.n_rows is not None and table.num_rows != file.n_rows:
                problem = f"holds {table.num_rows} rows, the registry records {file.n_rows}"
    if problem is not None:
        raise VectorFileError(f"{where} {problem}: {REPAIR}")
    return table


def _read_files(wh: Warehouse, space: str, files: Sequence[VectorFile]) -> pa.Table:
    """Read registered files, each checked against its record (size first, then the hash).

    Raises:
        VectorFileError: A file is missing, or its size, hash or row count differs from the
            record.
    """
    root = wh.vectors
    # One stat per file first (one listing call on an object store): a missing or truncated
    # file fails before any other is read.
    for file, size in zip(files, root.sizes([f.path for f in files]), strict=True):
        where = f"vector file {root.show(file.path)} of space {space!r}"
        if size is None:
            raise VectorFileError(f"{where} is registered but missing: {REPAIR}")
        if file.size_bytes is not None and size != file.size_bytes:
            raise VectorFileError(
                f"{where} holds {size} bytes, the registry records {file.size_bytes} "
                f"(altered or truncated): {REPAIR}"
            )
    tables = [read_checked(wh, file, space) for file in files]
    return pa.concat_tables(tables) if tables else VECTOR_FILE_SCHEMA.empty_table()


def _matrix(column: pa.ChunkedArray, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = pa.concat_arrays(column.chunks) if column.num_chunks != 1 else column.chunk(0)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(n, -1)


def get_space(session: Session, name: str) -> Space:
    space = session.scalar(select(Space).where(Space.name == name))
    if space is None:
        known = session.scalars(select(Space.name).order_by(Space.name).limit(8)).all()
        hint = f" (known spaces include: {', '.join(known)})" if known else " (no spaces yet)"
        raise NotFoundError(f"unknown space {name!r}{hint}")
    return space


def space_levels(session: Session, space: Space) -> tuple[str, ...]:
    """The levels a space has: ``concept`` where it has concept vectors, ``image`` where it
    has per-image data (a vision model's layer; a space ingested at the image level)."""
    kinds = set(
        session.scalars(
            select(VectorFile.kind).where(VectorFile.space_id == space.space_id).distinct()
        ).all()
    )
    levels = []
    if "concepts" in kinds or not kinds:
        levels.append("concept")
    if "images" in kinds or (space.layer_id is not None and space.kind == "layer"):
        levels.append("image")
    return tuple(levels)


def load_space(wh: Warehouse, name: str, level: str = "concept") -> SpaceVectors:
    """The vectors of a space as float64: concept vectors, rows sorted by concept, or, with
    ``level="image"``, per-image vectors, rows sorted by stimulus.

    Raises:
        NotFoundError: An unknown space.
        ConfigError: A level the space has no data at (which levels it has, and how to get
            the other).
    """
    if level not in ("concept", "image"):
        raise ConfigError(f"unknown level {level!r} (choose concept, image)")
    with wh.session() as session:
        space = get_space(session, name)
        levels = space_levels(session, space)
        if level not in levels:
            raise ConfigError(_no_level(space, level))
        if level == "image":
            return _load_images(wh, session, space)
        files = session.scalars(
            select(VectorFile).where(
                VectorFile.space_id == space.space_id, VectorFile.kind == "concepts"
            )
        ).all()
    table = _read_files(wh, name, files).sort_by("concept")
    matrix = _matrix(table.column("vector"), table.num_rows).astype(np.float64)
    return SpaceVectors(
        name=name,
        concept_ids=table.column("concept").to_pylist(),
        matrix=matrix,
        kind=space.kind,
        subjects=_subjects(wh, space, files, matrix, table.num_rows),
    )


def _no_level(space: Space, level: str) -> str:
    if level == "image":
        return (
            f"space {space.name!r} ({space.kind}) has no image level: it holds one vector per "
            "concept; ingest per-image data with `semwh ingest space NAME FILE --level image` "
            "(or `ingest rdm ... --level image`), keyed by stimulus"
        )
    return (
        f"space {space.name!r} ({space.kind}) holds dissimilarities between stimuli and has no "
        "concept level: compare it with --level image"
    )


def _subjects(
    wh: Warehouse, space: Space, files: Sequence[VectorFile], matrix: np.ndarray, n_rows: int
) -> tuple[str, ...] | None:
    """An ``rdm`` space's subject ids, as recorded in its file (numbered when absent)."""
    if space.kind != "rdm" or not n_rows:
        return None
    n_subjects = matrix.shape[1] // n_rows
    recorded = read_file_metadata(wh, files[0].path).get("subjects") if files else None
    if isinstance(recorded, list) and len(recorded) == n_subjects:
        return tuple(str(s) for s in recorded)
    return tuple(str(i + 1) for i in range(n_subjects))


def image_files_query(wh: Warehouse, session: Session, space: Space) -> Any:
    """The select of a space's per-image vector files: a layer's shards of the extraction
    run its concept means were computed from (recorded in its concept file; else its
    finished runs and files of no run), so that the shards of another run still in progress,
    or one that stopped, are not read; or the file of a space ingested at the image level."""
    from semwh.warehouse.models import ExtractionRun

    query = select(VectorFile).where(VectorFile.kind == "images")
    if space.kind != "layer" or space.layer_id is None:
        return query.where(VectorFile.space_id == space.space_id)
    query = query.where(VectorFile.layer_id == space.layer_id)
    concept_file = session.scalar(
        select(VectorFile.path).where(
            VectorFile.space_id == space.space_id, VectorFile.kind == "concepts"
        )
    )
    recorded = None
    if concept_file is not None:
        try:
            recorded = read_file_metadata(wh, concept_file).get("run_id")
        except (OSError, pa.ArrowException, ValueError):
            recorded = None  # a damaged concept file: `semwh verify` names it
    if isinstance(recorded, int):
        return query.where(VectorFile.run_id == recorded)
    # Finished runs, and files registered outside any run (no run can still be writing them).
    done = select(ExtractionRun.run_id).where(ExtractionRun.status == "done")
    return query.where(or_(VectorFile.run_id.in_(done), VectorFile.run_id.is_(None)))


def _image_rows(
    wh: Warehouse, session: Session, space: Space
) -> tuple[Sequence[VectorFile], pa.Table]:
    """A space's per-image files (:func:`image_files_query`, in run and shard order) and
    their rows, each file checked against its record."""
    query = image_files_query(wh, session, space)
    files = session.scalars(query.order_by(VectorFile.run_id, VectorFile.shard_index)).all()
    return files, _read_files(wh, space.name, files)


def _load_images(wh: Warehouse, session: Session, space: Space) -> SpaceVectors:
    """Per-image rows of a space, sorted by stimulus: a layer's extracted vectors (the
    newest run's row where an image was extracted twice) or an ingested image-level file."""
    from semwh.warehouse.models import Image

    files, table = _image_rows(wh, session, space)
    stimuli = dict(session.execute(select(Image.image_id, Image.stimulus)).tuples().all())
    image_ids = table.column("image_id").to_numpy()
    matrix = _matrix(table.column("vector"), table.num_rows)
    concepts = table.column("concept").to_pylist()
    # The last row of each image (files in run order), then sorted by stimulus.
    last: dict[int, int] = {int(i): row for row, i in enumerate(image_ids)}
    rows = sorted(last.values(), key=lambda r: stimuli.get(int(image_ids[r]), ""))
    missing = [int(image_ids[r]) for r in rows if int(image_ids[r]) not in stimuli]
    if missing:
        again = (
            f"extract {space.model} again (`semwh extract {space.model}`)"
            if space.kind == "layer" and space.model
            else f"ingest its file again (`semwh ingest ... {space.name} FILE --level image "
            "--replace`)"
        )
        raise VectorFileError(
            f"space {space.name!r} has vectors of image ids {missing[:5]} that the registry's "
            "images table no longer holds (`semwh ingest images` removes images whose files "
            f"are gone or changed): its image level is out of date; {again}"
        )
    matrix = np.asarray(matrix[rows], dtype=np.float64)
    return SpaceVectors(
        name=space.name,
        concept_ids=[stimuli[int(image_ids[r])] for r in rows],
        matrix=matrix,
        kind=space.kind,
        subjects=_subjects(wh, space, files, matrix, len(rows)),
        level="image",
        item_concepts=tuple(concepts[r] for r in rows),
        image_ids=tuple(int(image_ids[r]) for r in rows),
    )


def load_image_vectors(wh: Warehouse, space: str) -> ImageVectors:
    """Per-image vectors of a layer space, ordered by image_id: the shards of the extraction
    run its concept means came from (:func:`image_files_query`), as the image level reads."""
    with wh.session() as session:
        row = get_space(session, space)
        if row.layer_id is None:
            raise InputError(f"space {space!r} is a {row.kind} space with no per-image vectors")
        _, table = _image_rows(wh, session, row)
    table = table.sort_by("image_id")
    return ImageVectors(
        space=space,
        image_ids=table.column("image_id").to_numpy(),
        concept_ids=table.column("concept").to_pylist(),
        matrix=_matrix(table.column("vector"), table.num_rows).astype(np.float32, copy=False),
    )


def layer_spaces(session: Session, model: str, kinds: Sequence[str] = ("layer",)) -> list[Space]:
    """The spaces of ``model``'s layers of the given kinds, in depth order (then by name).

    ``kinds``: ``("layer",)`` for a vision model (default), ``("text-layer",)`` for a text
    model, :data:`LAYER_KINDS` for either. Empty when the model has no such spaces.
    """
    return list(
        session.scalars(
            select(Space)
            .where(Space.kind.in_(list(kinds)), Space.model == model)
            .order_by(Space.depth_index, Space.name)
        ).all()
    )


def list_spaces(wh: Warehouse, kind: str | None = None) -> list[Space]:
    with wh.session() as session:
        query = select(Space).order_by(Space.kind, Space.model, Space.depth_index, Space.name)
        if kind is not None:
            query = query.where(Space.kind == kind)
        return list(session.scalars(query).all())


def read_file_metadata(wh: Warehouse, relpath: str) -> dict[str, Any]:
    """The semwh provenance stored in a vector file's Parquet metadata."""
    meta = wh.vectors.read_metadata(relpath)
    return json.loads(meta.get(METADATA_KEY, b"{}"))


def clean_tmp(wh: Warehouse) -> int:
    """Remove temporary files left by killed writers; returns how many were removed."""
    return wh.vectors.clean_tmp()


def ensure_unique(values: Sequence[str], what: str, where: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise DuplicateError(f"{where}: {what} {value!r} appears more than once")
        seen.add(value)
