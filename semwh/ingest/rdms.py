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
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from semwh.analyze import MIN_CONCEPTS
from semwh.analyze.ceiling import CEILING_METHODS, noise_ceiling
from semwh.errors import InputError
from semwh.hashing import sha256_file
from semwh.ingest.concepts import registry_keys
from semwh.ingest.files import regular_size
from semwh.ingest.keys import KEY_COLUMNS, key_column
from semwh.names import check_name
from semwh.runs.provenance import concepts_sha256
from semwh.vectors import save_space
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


def read_rdm_file(path: Path, keys: Path | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """The concept_ids, the (subjects, n, n) matrices and the subject ids of an RDM file.

    Raises:
        InputError: An unreadable or malformed file, naming what is wrong.
    """
    regular_size(path, "RDM file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if keys is None:
            raise InputError(f"{path}: an .npy RDM needs --keys FILE (one concept key per line)")
        regular_size(keys, "RDM key list")
        concept_ids = [line.strip() for line in keys.read_text(encoding="utf-8").splitlines()]
        concept_ids = [w for w in concept_ids if w]
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
        stack = array[None] if array.ndim == 2 else array
        if stack.ndim != 3 or stack.shape[1:] != (len(concept_ids), len(concept_ids)):
            raise InputError(
                f"{path}: array of shape {array.shape} for {len(concept_ids)} keys; expected "
                f"{len(concept_ids)} x {len(concept_ids)} or subjects x "
                f"{len(concept_ids)} x {len(concept_ids)}"
            )
        names = [str(i + 1) for i in range(len(stack))]
        return concept_ids, np.asarray(stack, dtype=np.float64), names
    if suffix in (".csv", ".parquet"):
        try:
            # Subject ids and concept keys are text as written ("01" stays "01", not 1).
            table = (
                pq.read_table(path)
                if suffix == ".parquet"
                else pacsv.read_csv(
                    path,
                    convert_options=pacsv.ConvertOptions(
                        column_types={k: pa.string() for k in ("subject", *KEY_COLUMNS)}
                    ),
                )
            )
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: cannot be read as {suffix[1:]} ({exc})") from exc
        return _from_table(path, table)
    raise InputError(f"{path}: unknown RDM format {suffix!r} (use .csv, .parquet or .npy)")


def _from_table(path: Path, table: pa.Table) -> tuple[list[str], np.ndarray, list[str]]:
    key = key_column(table.column_names)
    if key is None:
        raise InputError(
            f"{path}: no 'concept' column (the row keys of the matrices; 'wnid' is accepted)"
        )
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
                f"{column!r}); each concept has one column"
            )
        by_key[text] = column
    concept_ids = sorted(set(rows))
    if sorted(by_key) != concept_ids:
        extra = sorted(set(by_key) - set(concept_ids))[:5]
        missing = sorted(set(concept_ids) - set(by_key))[:5]
        raise InputError(
            f"{path}: the matrix columns must be the row keys, written the same way (extra "
            f"columns: {extra or 'none'}, rows without a column: {missing or 'none'})"
        )
    try:
        values = np.column_stack(
            [np.asarray(table.column(by_key[w]).to_pylist(), dtype=np.float64) for w in concept_ids]
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: matrix cells must be numbers ({exc})") from exc
    order = {w: i for i, w in enumerate(concept_ids)}
    stack = []
    names = list(dict.fromkeys(subjects))
    for subject in names:
        picked = [i for i, s in enumerate(subjects) if s == subject]
        keys = [rows[i] for i in picked]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise InputError(
                f"{path}: subject {subject!r} has a duplicate row for concept "
                f"{', '.join(repeated[:5])}; every subject needs one row per concept, each once"
            )
        if sorted(keys) != concept_ids:
            raise InputError(
                f"{path}: subject {subject!r} has {len(keys)} rows; every subject needs one row "
                f"per concept ({len(concept_ids)}), each once"
            )
        matrix = np.empty((len(concept_ids), len(concept_ids)))
        for i, key in zip(picked, keys, strict=True):
            matrix[order[key]] = values[i]
        stack.append(matrix)
    return concept_ids, np.stack(stack), names


def _key_text(value: object) -> str:
    """A row key or column name as text, NFC and trimmed (an empty cell: empty)."""
    return "" if value is None else unicodedata.normalize("NFC", str(value)).strip()


def _subject_name(subjects: list[str] | None, index: int) -> str:
    return repr(subjects[index]) if subjects else str(index + 1)


def _check(
    path: Path, concept_ids: list[str], stack: np.ndarray, subjects: list[str] | None = None
) -> None:
    if len(set(concept_ids)) != len(concept_ids):
        repeated = sorted({w for w in concept_ids if concept_ids.count(w) > 1})
        raise InputError(f"{path}: duplicate keys: {', '.join(repeated[:5])}")
    if len(concept_ids) < MIN_CONCEPTS:
        raise InputError(
            f"{path}: {len(concept_ids)} concepts; an RDM needs at least {MIN_CONCEPTS}"
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
) -> RDMIngestReport:
    """Ingest per-subject dissimilarity (or similarity) matrices as the RDM space ``name``.

    Raises:
        InputError: A malformed file, asymmetric or non-finite matrices, unknown concept_ids.
        DuplicateError: ``name`` holds other content and ``replace`` is false.
    """
    check_name(name, "space")
    file = Path(path).expanduser().resolve()
    concept_ids, stack, subjects = read_rdm_file(
        file, Path(keys).expanduser().resolve() if keys else None
    )
    _check(file, concept_ids, stack, subjects)
    if similarity:
        stack = 1.0 - stack
    _check_dissimilarity(file, stack, similarity)
    with wh.session() as session:
        registry = registry_keys(session)
    # The keys name the rows and the columns alike: one rule reads them (the id, else the
    # exact name or WordNet id of one concept).
    match = registry.match(concept_ids, f"RDM file {file}")
    match.raise_unknown()
    match.check_unique()
    concept_ids = match.resolved_ids
    order = np.argsort(concept_ids)
    concept_ids = [concept_ids[i] for i in order]
    stack = stack[:, order][:, :, order]
    vectors = np.transpose(stack, (1, 0, 2)).reshape(len(concept_ids), -1)
    space = save_space(
        wh,
        name,
        "rdm",
        concept_ids,
        vectors,
        replace=replace,
        metadata={
            "source": str(file),
            "source_sha256": sha256_file(file),
            "n_subjects": str(stack.shape[0]),
            "subjects": subjects,
            "input": "similarity" if similarity else "dissimilarity",
        },
    )
    ceilings: dict[str, tuple[float, float]] = {}
    if stack.shape[0] >= 2:
        ceilings = store_ceilings(wh, space, concept_ids, stack)
    return RDMIngestReport(name, len(concept_ids), int(stack.shape[0]), ceilings)


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
