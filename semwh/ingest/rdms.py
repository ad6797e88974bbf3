"""`semwh ingest rdm`: per-subject representational dissimilarity matrices as a target space.

An RDM file holds square matrices keyed by concept, one per subject or a single one:

* CSV or Parquet: a ``concept`` column (``wnid``, its older name, is accepted), one column
  per key (the matrix columns, in any order) and, for several subjects, a ``subject``
  column; each subject's rows form its matrix;
* ``.npy``: an n x n or subjects x n x n array, with ``keys`` naming the concept of each row
  (a text file, one key a line).

Keys follow the one rule of every input keyed by concept (:mod:`semwh.ingest.keys`): a
concept's id, else the exact name or WordNet id of one concept.

The matrices are dissimilarities (``similarity=True`` reads similarities, stored as
1 - similarity). They are stored as a space of kind ``rdm``: concept i's vector holds its row
of every subject's matrix side by side, so the Parquet store, versions, content hashes and
``vectors`` view work as for any space; RSA and 2 vs 2 compare with each subject's matrix and
average (:func:`semwh.runs.comparison.plan_comparison`); the subjects' ids are kept in the
file's metadata. The RSA noise ceiling over all the RDM's concepts (Spearman and Pearson) is
stored in ``noise_ceilings`` with several subjects.

At the image level (``level="image"``) the key column is ``stimulus`` (an ``.npy`` file's
keys are stimulus ids) and every key names a registered image: the matrices are stored in
the same layout, one row per stimulus, as the space's per-image file (kind ``images``); such
an RDM has no concept level. Its noise ceilings are stored over its stimuli.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import select

from semwh.analyze import MIN_CONCEPTS
from semwh.analyze.ceiling import CEILING_METHODS, noise_ceiling
from semwh.analyze.design import check_level
from semwh.errors import DuplicateError, InputError
from semwh.hashing import sha256_file
from semwh.ingest.concepts import registry_keys
from semwh.ingest.files import regular_size
from semwh.ingest.keys import KEY_COLUMNS, key_column
from semwh.ingest.sources import drop_space
from semwh.ingest.stimuli import (
    CONCEPT_LEVEL,
    IMAGE_LEVEL,
    STIMULUS,
    check_level_change,
    image_content,
    match_stimuli,
    register_image_only,
    write_images,
)
from semwh.names import check_name
from semwh.runs.provenance import concepts_sha256
from semwh.vectors import LAYER_KINDS, save_space, version_swap
from semwh.vectors.store import space_files_intact, space_levels
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import NoiseCeiling, Space

#: Largest asymmetry |D - D'| accepted, relative to the largest |D|.
SYMMETRY_RTOL = 1e-8


@dataclass(frozen=True)
class RDMIngestReport:
    """What ``ingest_rdm`` stored."""

    name: str
    n_concepts: int
    n_subjects: int
    ceilings: dict[str, tuple[float, float]]
    #: ``concept``, or ``image``: the rows are ``n_stimuli`` stimuli of ``n_concepts``
    #: concepts.
    level: str = CONCEPT_LEVEL
    n_stimuli: int | None = None


@dataclass(frozen=True)
class _Matrices:
    """What an RDM file holds: the row keys, the (subjects, n, n) matrices (rows and columns
    in key order), the subject ids, and where each key was first read (for messages)."""

    keys: list[str]
    stack: np.ndarray
    subjects: list[str]
    places: list[str]


def read_rdm_file(path: Path, keys: Path | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """The concept_ids, the (subjects, n, n) matrices and the subject ids of an RDM file.

    Raises:
        InputError: An unreadable or malformed file, naming what is wrong.
    """
    found = _read(path, keys, CONCEPT_LEVEL)
    return found.keys, found.stack, found.subjects


def _read(path: Path, keys: Path | None, level: str) -> _Matrices:
    """An RDM file keyed by concept, or by stimulus at the image level."""
    regular_size(path, "RDM file")
    suffix = path.suffix.lower()
    noun = "stimulus id" if level == IMAGE_LEVEL else "concept key"
    if suffix == ".npy":
        if keys is None:
            raise InputError(f"{path}: an .npy RDM needs --keys FILE (one {noun} per line)")
        regular_size(keys, "RDM key list")
        key_ids, places = _key_list(keys, noun)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
        stack = array[None] if array.ndim == 2 else array
        if stack.ndim != 3 or stack.shape[1:] != (len(key_ids), len(key_ids)):
            raise InputError(
                f"{path}: array of shape {array.shape} for {len(key_ids)} keys; expected "
                f"{len(key_ids)} x {len(key_ids)} or subjects x "
                f"{len(key_ids)} x {len(key_ids)}"
            )
        names = [str(i + 1) for i in range(len(stack))]
        return _Matrices(key_ids, np.asarray(stack, dtype=np.float64), names, places)
    if suffix in (".csv", ".parquet"):
        try:
            # Subject ids and keys are text as written ("01" stays "01", not 1).
            table = (
                pq.read_table(path)
                if suffix == ".parquet"
                else pacsv.read_csv(
                    path,
                    convert_options=pacsv.ConvertOptions(
                        column_types={k: pa.string() for k in ("subject", STIMULUS, *KEY_COLUMNS)}
                    ),
                )
            )
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from exc
        return _from_table(path, table, level)
    raise InputError(f"{path}: unknown RDM format {suffix!r} (use .csv, .parquet or .npy)")


def _key_list(path: Path, noun: str) -> tuple[list[str], list[str]]:
    """The keys of an .npy RDM's rows, one a line (blank lines skipped), with their lines; a
    key given twice names both lines."""
    keys: list[str] = []
    places: list[str] = []
    first: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        key = _key_text(line)
        if not key:
            continue
        place = f"{path} line {number}"
        if key in first:
            raise InputError(
                f"{place}: {noun} {key!r} appears again (first at {first[key]}); each row of "
                "the matrices has its own key"
            )
        first[key] = place
        keys.append(key)
        places.append(place)
    return keys, places


def _from_table(path: Path, table: pa.Table, level: str = CONCEPT_LEVEL) -> _Matrices:
    if level == IMAGE_LEVEL:
        key = STIMULUS if STIMULUS in table.column_names else None
        wanted, noun = "'stimulus' column (the stimulus ids of the rows)", "stimulus"
    else:
        key = key_column(table.column_names)
        wanted = "'concept' column (the row keys of the matrices; 'wnid' is accepted)"
        noun = "concept"
    if key is None:
        hint = ""
        if level != IMAGE_LEVEL and STIMULUS in table.column_names:
            hint = "; matrices keyed by stimulus are ingested with --level image"
        raise InputError(f"{path}: no {wanted}{hint}")
    # Where row i was read: a CSV's line (after its header line), a Parquet file's row.
    csv_file = path.suffix.lower() == ".csv"

    def line(i: int) -> str:
        return f"line {i + 2}" if csv_file else f"row {i + 1}"

    rows = [_key_text(r) for r in table.column(key).to_pylist()]
    subjects = (
        ["" if s is None else str(s).strip() for s in table.column("subject").to_pylist()]
        if "subject" in table.column_names
        else ["1"] * table.num_rows
    )
    if "" in subjects:
        row = subjects.index("")
        raise InputError(f"{path}: row {row + 1} has an empty subject id; name every subject")
    index = {c for c in table.column_names if c.startswith("__index_level_")}
    pandas_meta = table.schema.pandas_metadata or {}
    index |= {c for c in pandas_meta.get("index_columns", []) if isinstance(c, str)}
    # The matrix columns by their key as the rows write it (NFC, trimmed).
    by_key: dict[str, str] = {}
    for column in table.column_names:
        if column in {key, "subject"} | index:
            continue
        text = _key_text(column)
        if text in by_key:
            raise InputError(
                f"{path}: the header names {text!r} twice (columns {by_key[text]!r} and "
                f"{column!r}); each {noun} has one column"
            )
        by_key[text] = column
    key_ids = sorted(set(rows))
    if sorted(by_key) != key_ids:
        extra = sorted(set(by_key) - set(key_ids))[:5]
        missing = sorted(set(key_ids) - set(by_key))[:5]
        raise InputError(
            f"{path}: the matrix columns must be the row keys, written the same way (extra "
            f"columns: {extra or 'none'}, rows without a column: {missing or 'none'})"
        )
    try:
        values = np.column_stack(
            [np.asarray(table.column(by_key[w]).to_pylist(), dtype=np.float64) for w in key_ids]
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: matrix cells must be numbers ({exc})") from exc
    order = {w: i for i, w in enumerate(key_ids)}
    stack = []
    names = list(dict.fromkeys(subjects))
    for subject in names:
        picked = [i for i, s in enumerate(subjects) if s == subject]
        seen: dict[str, int] = {}
        for i in picked:
            j = seen.setdefault(rows[i], i)
            if j != i:
                raise InputError(
                    f"{path}: subject {subject!r} has a duplicate row for {noun} {rows[i]} "
                    f"({line(j)} and {line(i)}); every subject needs one row per {noun}, "
                    "each once"
                )
        if len(seen) != len(key_ids):
            raise InputError(
                f"{path}: subject {subject!r} has {len(picked)} rows; every subject needs one "
                f"row per {noun} ({len(key_ids)}), each once"
            )
        matrix = np.empty((len(key_ids), len(key_ids)))
        for i in picked:
            matrix[order[rows[i]]] = values[i]
        stack.append(matrix)
    first: dict[str, str] = {}
    for i, key_id in enumerate(rows):
        first.setdefault(key_id, f"{path} {line(i)}")
    return _Matrices(key_ids, np.stack(stack), names, [first[k] for k in key_ids])


def _key_text(value: object) -> str:
    """A row key or column name as text, NFC and trimmed (an empty cell: empty)."""
    return "" if value is None else unicodedata.normalize("NFC", str(value)).strip()


def _subject_name(subjects: list[str] | None, index: int) -> str:
    return repr(subjects[index]) if subjects else str(index + 1)


def _check(
    path: Path,
    concept_ids: list[str],
    stack: np.ndarray,
    subjects: list[str] | None = None,
    items: str = "concepts",
) -> None:
    if len(set(concept_ids)) != len(concept_ids):
        repeated = sorted({w for w in concept_ids if concept_ids.count(w) > 1})
        raise InputError(f"{path}: duplicate keys: {', '.join(repeated[:5])}")
    if len(concept_ids) < MIN_CONCEPTS:
        raise InputError(
            f"{path}: {len(concept_ids)} {items}; an RDM needs at least {MIN_CONCEPTS}"
        )
    if not np.isfinite(stack).all():
        subject = int(np.flatnonzero(~np.isfinite(stack).all(axis=(1, 2)))[0])
        raise InputError(f"{path}: subject {subject + 1} has NaN or inf cells")
    iu = np.triu_indices(stack.shape[1], 1)
    flat = np.ptp(stack[:, iu[0], iu[1]], axis=1) == 0
    if flat.any():
        subject = int(np.flatnonzero(flat)[0])
        raise InputError(
            f"{path}: every dissimilarity of subject {_subject_name(subjects, subject)} is the "
            "same; a constant RDM carries no structure to compare (drop the subject)"
        )
    scale = max(float(np.abs(stack).max()), 1e-300)
    asym = np.abs(stack - np.transpose(stack, (0, 2, 1))).max(axis=(1, 2))
    if (asym > SYMMETRY_RTOL * scale).any():
        subject = int(np.argmax(asym))
        raise InputError(
            f"{path}: the matrix of subject {subject + 1} is not symmetric (largest "
            f"|D - D'| {asym[subject]:.3g}); RDMs must be symmetric"
        )


def _check_dissimilarity(path: Path, stack: np.ndarray, similarity: bool) -> None:
    """Refuse matrices that are not dissimilarities (after a --similarity conversion): a
    non-zero diagonal or negative entries would flip the sign of every RSA silently."""
    scale = max(float(np.abs(stack).max()), 1.0)
    diagonal = np.abs(np.diagonal(stack, axis1=1, axis2=2)).max(axis=1)
    lowest = stack.min(axis=(1, 2))
    hint = (
        "with --similarity the matrices must be similarities with 1 on the diagonal; drop "
        "--similarity for dissimilarities"
        if similarity
        else "pass --similarity if the matrices hold similarities"
    )
    if (diagonal > SYMMETRY_RTOL * scale).any():
        subject = int(np.argmax(diagonal))
        what = "1 - diagonal" if similarity else "diagonal"
        raise InputError(
            f"{path}: subject {subject + 1} has a non-zero {what} (up to "
            f"{diagonal[subject]:.3g}); an RDM holds dissimilarities, 0 on the diagonal: {hint}"
        )
    if (lowest < -SYMMETRY_RTOL * scale).any():
        subject = int(np.argmin(lowest))
        raise InputError(
            f"{path}: subject {subject + 1} has negative dissimilarities (down to "
            f"{lowest[subject]:.3g}); an RDM holds dissimilarities >= 0: {hint}"
        )


def ingest_rdm(
    wh: Warehouse,
    name: str,
    path: str | os.PathLike[str],
    *,
    keys: str | os.PathLike[str] | None = None,
    similarity: bool = False,
    replace: bool = False,
    level: str = CONCEPT_LEVEL,
) -> RDMIngestReport:
    """Ingest per-subject dissimilarity (or similarity) matrices as the RDM space ``name``.

    At the image level the rows and columns are stimuli (the ids of registered images): the
    space has an image level only, stored as one per-image file (each stimulus's rows of
    every subject's matrix side by side, columns in stimulus order).

    Raises:
        InputError: A malformed file, asymmetric or non-finite matrices, unknown concept_ids
            (unknown or repeated stimulus ids at the image level).
        DuplicateError: ``name`` holds other content, or is stored at the other level, and
            ``replace`` is false.
    """
    check_name(name, "space")
    image = check_level(level) == IMAGE_LEVEL
    file = Path(path).expanduser().resolve()
    found = _read(file, Path(keys).expanduser().resolve() if keys else None, level)
    concept_ids, stack, subjects = found.keys, found.stack, found.subjects
    _check(file, concept_ids, stack, subjects, "stimuli" if image else "concepts")
    if similarity:
        stack = 1.0 - stack
    _check_dissimilarity(file, stack, similarity)
    metadata = {
        "source": str(file),
        "source_sha256": sha256_file(file),
        "n_subjects": str(stack.shape[0]),
        "subjects": subjects,
        "input": "similarity" if similarity else "dissimilarity",
    }
    if image:
        return _ingest_image_rdm(wh, name, file, found, stack, metadata, replace)
    with wh.session() as session:
        registry = registry_keys(session)
        existing = session.scalar(select(Space).where(Space.name == name))
        check_level_change(session, existing, CONCEPT_LEVEL, replace)
        per_image = existing is not None and IMAGE_LEVEL in space_levels(session, existing)
    # The keys name the rows and the columns alike: one rule reads them (the id, else the
    # exact name or WordNet id of one concept).
    match = registry.match(zip(concept_ids, found.places, strict=True), f"RDM file {file}")
    match.raise_unknown()
    match.check_unique()
    concept_ids = match.resolved_ids
    order = np.argsort(concept_ids)
    concept_ids = [concept_ids[i] for i in order]
    stack = stack[:, order][:, :, order]
    vectors = np.transpose(stack, (1, 0, 2)).reshape(len(concept_ids), -1)
    if per_image and existing is not None and existing.kind not in LAYER_KINDS:
        # A concept-level version of a space ingested at the image level (replace=True):
        # its per-image rows go with the old version.
        drop_space(wh, name)
    space = save_space(wh, name, "rdm", concept_ids, vectors, replace=replace, metadata=metadata)
    ceilings: dict[str, tuple[float, float]] = {}
    if stack.shape[0] >= 2:
        ceilings = store_ceilings(wh, space, concept_ids, stack)
    return RDMIngestReport(name, len(concept_ids), int(stack.shape[0]), ceilings)


def _ingest_image_rdm(
    wh: Warehouse,
    name: str,
    file: Path,
    found: _Matrices,
    stack: np.ndarray,
    metadata: dict[str, Any],
    replace: bool,
) -> RDMIngestReport:
    """Store matrices between stimuli as an RDM space with an image level only."""
    with wh.session() as session:
        existing = session.scalar(select(Space).where(Space.name == name))
        check_level_change(session, existing, IMAGE_LEVEL, replace)
        stimuli = match_stimuli(session, found.keys, found.places, f"RDM file {file}")
    order = stimuli.order
    stack = stack[:, order][:, :, order]
    vectors = np.transpose(stack, (1, 0, 2)).reshape(len(order), -1)
    digest = image_content(stimuli, vectors)
    if existing is not None and existing.content_sha256 != digest and not replace:
        raise DuplicateError(
            f"space {name!r} already exists with other vectors; pass replace=True "
            "(--replace) to store the new version"
        )
    if (
        existing is not None
        and existing.kind == "rdm"
        and existing.content_sha256 == digest
        and space_files_intact(wh, existing.space_id, ("images",))
    ):
        space = existing  # the same matrices again
    else:
        info = write_images(wh, name, stimuli, vectors, digest, {"space_kind": "rdm", **metadata})
        if existing is not None and existing.kind != "rdm":
            drop_space(wh, name)  # taking over another kind's name (replace=True)
        with version_swap(wh) as session:
            space = register_image_only(
                session, name, "rdm", info, digest, int(vectors.shape[1]), stimuli.n_concepts
            )
    ceilings: dict[str, tuple[float, float]] = {}
    if stack.shape[0] >= 2:
        ceilings = store_ceilings(wh, space, stimuli.stimuli, stack)
    return RDMIngestReport(
        name, stimuli.n_concepts, int(stack.shape[0]), ceilings, IMAGE_LEVEL, len(order)
    )


def store_ceilings(
    wh: Warehouse, space: Space, concept_ids: list[str], stack: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Compute and store the noise ceilings of ``stack`` over ``concept_ids`` (both methods)."""
    out: dict[str, tuple[float, float]] = {}
    digest = concepts_sha256(sorted(concept_ids))
    with wh.session() as session:
        for method in CEILING_METHODS:
            ceiling = noise_ceiling(stack, method)
            key = (space.name, str(space.content_sha256), digest, method)
            if session.get(NoiseCeiling, key) is None:
                session.add(
                    NoiseCeiling(
                        space=space.name,
                        space_sha256=str(space.content_sha256),
                        concepts_sha256=digest,
                        method=method,
                        n_concepts=len(concept_ids),
                        n_subjects=ceiling.n_subjects,
                        lower=ceiling.lower,
                        upper=ceiling.upper,
                    )
                )
            out[method] = (ceiling.lower, ceiling.upper)
    return out
