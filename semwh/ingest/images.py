"""Images: found in a folder (``DIR/<wnid>/*`` or flat ``<wnid>_<id>_<label>.jpg``) or a CSV
manifest, hashed and decoded in a thread pool, deduplicated by SHA-256 and inserted in one
transaction together with any concepts they introduce."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, InputError
from semwh.ingest.concepts import (
    ConceptInput,
    check_wnid,
    describe,
    existing_concepts,
    label_to_name,
    upsert_concepts,
)
from semwh.ingest.files import MAX_IMAGE_BYTES, not_regular, read_bytes
from semwh.ingest.formats import read_utf8_text
from semwh.ingest.image_checks import cross_concept_copies, in_scope, stale_reason
from semwh.ingest.imagenet import try_imagenet_index
from semwh.ingest.sources import SourceSpec, record_source
from semwh.ingest.wordnet import WNID_RE, open_wordnet
from semwh.progress import Progress, check_progress
from semwh.resources import image_size_problem, is_limit_reason
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image, Prediction, RecoveryImage

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# <wnid>_<image id>[_<label>]: the label may itself hold underscores (domestic_cat).
FLAT_NAME = re.compile(r"^(n\d{8})_([^_]+)(?:_(.+))?$")


def wnid_of_file(path: str | os.PathLike[str]) -> str | None:
    """The WordNet id a flat file name ``<wnid>_<id>[_<label>].jpg`` gives; None otherwise.

    >>> wnid_of_file("photos/n02084071_1365_dog.jpg")
    'n02084071'
    """
    flat = FLAT_NAME.match(Path(path).stem)
    return flat.group(1) if flat else None


@dataclass(frozen=True)
class Candidate:
    """An image file to ingest: its concept key (as the folder, name or manifest gives it),
    label, split and stimulus id (None: the file's stem)."""

    path: Path
    concept: str
    label: str | None
    split: str | None = None
    stimulus: str | None = None

    @property
    def stimulus_id(self) -> str:
        return self.stimulus or self.path.stem


@dataclass(frozen=True)
class Decoded:
    candidate: Candidate
    sha256: str
    size_bytes: int
    width: int
    height: int
    mode: str


@dataclass
class ImageIngestReport:
    """What an ingest of images did.

    Attributes:
        n_found: Image files found (or manifest rows).
        added: Images inserted now.
        already_present: Files whose content the warehouse already holds.
        duplicates: (path, path of the first file with the same content) within this input.
        skipped: (path, reason) for files that could not be read or decoded.
        conflicts: (path, what) for files refused because the same photo (same bytes) is
            given or registered under another concept: an image belongs to one concept.
        removed: (path, why) for registered images of this folder (or manifest) whose file
            is gone, changed or unreadable now: dropped with their predictions.
        moved: (old path, new path) for registered images found again elsewhere in the input.
        new_concepts: Concepts created for these images.
        source_status: created, unchanged or new version.
    """

    n_found: int = 0
    added: int = 0
    already_present: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    new_concepts: list[str] = field(default_factory=list)
    source_id: int | None = None
    source_version: int | None = None
    source_status: str = ""
    wordnet: str = ""
    seconds: float = 0.0


def find_images(folder: Path) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Image files below ``folder`` with the wnid their folder or name gives."""
    found: list[Candidate] = []
    skipped: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        parent = Path(dirpath)
        for filename in sorted(filenames):
            path = parent / filename
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            reason = not_regular(path)
            if reason is not None:
                skipped.append((str(path), reason))
                continue
            flat = FLAT_NAME.match(path.stem)
            label = flat.group(3) if flat else None
            if WNID_RE.match(parent.name):
                same = flat is not None and flat.group(1) == parent.name
                found.append(Candidate(path, parent.name, label if same else None))
            elif flat:
                found.append(Candidate(path, flat.group(1), label))
            else:
                skipped.append(
                    (str(path), "no WordNet id in its folder (DIR/<wnid>/) or name (<wnid>_...)")
                )
    return found, skipped


def read_manifest(manifest: Path) -> list[Candidate]:
    """Rows of a CSV manifest with columns path, wnid and optionally split and label.

    Relative paths are relative to the manifest's folder. Without a label column, a file
    named ``<wnid>_<id>_<label>.jpg`` gives its label.
    """
    text = read_utf8_text(manifest, "manifest")
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or [])
    if not {"path", "wnid"} <= columns:
        raise InputError(
            f"{manifest} line 1: a manifest needs the columns path and wnid (and optionally "
            f"split); found {', '.join(sorted(columns)) or 'none'}"
        )
    rows: list[Candidate] = []
    for row in reader:
        place = f"{manifest} line {reader.line_num}"
        raw_path = (row.get("path") or "").strip()
        wnid = check_wnid((row.get("wnid") or "").strip(), place)
        if not raw_path:
            raise InputError(f"{place}: empty path")
        path = Path(raw_path).expanduser()
        path = path if path.is_absolute() else manifest.parent / path
        reason = not_regular(path)
        if reason is not None and reason != "does not exist":
            # A FIFO would block the read and a device (/dev/zero) would never end it.
            raise InputError(f"{place}: {path} {reason}; list image files only")
        split = (row.get("split") or "").strip() or None
        # A label column names the concept; else a <wnid>_<id>_<label> file name does.
        label = (row.get("label") or "").strip() or None
        flat = FLAT_NAME.match(path.stem)
        if label is None and flat is not None and flat.group(1) == wnid:
            label = flat.group(3)
        rows.append(Candidate(path.resolve(), wnid, label, split))
    if not rows:
        raise InputError(f"{manifest}: the manifest lists no images")
    return rows


def decode(candidate: Candidate) -> Decoded | str:
    """Hash and fully decode one file; the reason it failed as a string otherwise."""
    from PIL import Image as PILImage

    try:
        data = read_bytes(candidate.path, "image", MAX_IMAGE_BYTES)
    except InputError as exc:
        return "cannot read: " + str(exc).replace(f"image {candidate.path} ", "", 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    digest = hashlib.sha256(data).hexdigest()
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            width, height, mode = image.width, image.height, image.mode
            too_big = image_size_problem(width, height)
            if too_big is not None:
                return too_big
            # Decoding every pixel finds truncated and corrupt files that a header read misses.
            image.load()
    except Exception as exc:
        return f"cannot decode: {exc}"
    return Decoded(candidate, digest, len(data), width, height, mode)


def _source_sha(decoded: list[Decoded], root: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(decoded, key=lambda d: str(d.candidate.path)):
        c = item.candidate
        try:
            rel = str(c.path.relative_to(root))
        except ValueError:
            rel = str(c.path)
        digest.update(f"{rel}\t{item.sha256}\t{c.concept}\t{c.split or ''}\n".encode())
    return digest.hexdigest()


def _refuse_cross_concept(decoded: list[Decoded], report: ImageIngestReport) -> list[Decoded]:
    """The decoded files less those whose bytes the input gives under two or more concepts
    (each listed in ``report.conflicts`` with the other places it was found)."""
    copies = cross_concept_copies(
        [(str(d.candidate.path), d.candidate.concept, d.sha256) for d in decoded]
    )
    for places in copies.values():
        for path, wnid in places:
            others = "; ".join(f"{p} (concept {w})" for p, w in places if (p, w) != (path, wnid))
            report.conflicts.append(
                (
                    path,
                    f"concept {wnid}, but the same photo is also given as {others}; an image "
                    "belongs to one concept: this file is not ingested (remove the wrong copy)",
                )
            )
    return [d for d in decoded if d.sha256 not in copies]


def _refuse_registered_elsewhere(
    unique: list[Decoded], present: dict[str, str], report: ImageIngestReport
) -> list[Decoded]:
    """``unique`` less the files whose bytes are registered under another concept."""
    kept = []
    for item in unique:
        registered = present.get(item.sha256)
        if registered is not None and registered != item.candidate.concept:
            report.conflicts.append(
                (
                    str(item.candidate.path),
                    f"concept {item.candidate.concept}, but the same photo is registered under "
                    f"concept {registered}: not stored",
                )
            )
            continue
        kept.append(item)
    return kept


def _stale_images(
    wh: Warehouse,
    root: Path | None,
    candidates: list[Candidate],
    decoded: list[Decoded],
    first_by_hash: dict[str, Decoded],
    report: ImageIngestReport,
) -> list[tuple[int, str, str, str, str]]:
    """Registered images of this folder (or manifest) whose file is gone, changed or
    unreadable now: (image_id, path, sha256, wnid, why)."""
    listed = {str(c.path) for c in candidates}
    on_disk = {str(d.candidate.path): d.sha256 for d in decoded}
    skipped = dict(report.skipped)
    with wh.session() as session:
        query = select(Image.image_id, Image.path, Image.sha256, Image.concept)
        if root is not None:
            query = query.where(Image.path.startswith(str(root) + os.sep, autoescape=True))
        rows = session.execute(query).tuples().all()
    stale = []
    for image_id, path, digest, wnid in rows:
        if not in_scope(path, root, listed) or on_disk.get(path) == digest:
            continue
        if path in skipped and is_limit_reason(skipped[path]):
            # Intact but over this machine's size limit: kept (the limit may differ elsewhere);
            # the summary lists it as skipped with the reason.
            continue
        if path in on_disk or path in skipped or not os.path.lexists(path):
            stale.append((image_id, path, digest, wnid, stale_reason(path, skipped)))
    if stale:
        # Predictions go first, in their own transaction: DuckDB checks a foreign key
        # against rows deleted earlier in the same transaction as if they were still there.
        ids = [row[0] for row in stale if not _moved(row, first_by_hash)]
        with wh.session() as session:
            refs = session.execute(
                select(RecoveryImage.image_id, RecoveryImage.result_id).where(
                    RecoveryImage.image_id.in_(ids)
                )
            ).first()
            if refs is not None:
                path = next(row[1] for row in stale if row[0] == refs[0])
                raise InputError(
                    f"image {path} (image_id {refs[0]}) is {stale_reason(path, skipped)}, but "
                    f"the stored recovery result {refs[1]} refers to it: restore the file"
                )
            session.execute(delete(Prediction).where(Prediction.image_id.in_(ids)))
    return stale


def _moved(
    row: tuple[int, str, str, str, str], first_by_hash: dict[str, Decoded]
) -> Decoded | None:
    """The input's file with a stale image's bytes under its concept (the photo moved)."""
    found = first_by_hash.get(row[2])
    return found if found is not None and found.candidate.concept == row[3] else None


def _drop_or_move(
    session: Session,
    stale: list[tuple[int, str, str, str, str]],
    first_by_hash: dict[str, Decoded],
    report: ImageIngestReport,
) -> None:
    """Drop the stale images, or point them at their file's new place in the input."""
    for row in stale:
        image_id, path, _, _, why = row
        found = _moved(row, first_by_hash)
        if found is not None:
            image = session.get(Image, image_id)
            assert image is not None
            image.path = str(found.candidate.path)
            report.moved.append((path, str(found.candidate.path)))
            continue
        session.execute(delete(Image).where(Image.image_id == image_id))
        report.removed.append((path, why))
    session.flush()


def ingest_images(
    wh: Warehouse,
    folder: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    *,
    wordnet: str | os.PathLike[str] | bool | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImageIngestReport:
    """Ingest image files: path, SHA-256, size and mode; new concepts are created.

    Re-running adds only files whose content is new. Files that cannot be read or decoded are
    listed in the report and skipped.

    Args:
        wh: The warehouse.
        folder: ``DIR/<wnid>/*.JPEG`` or flat ``<wnid>_<id>[_<label>].jpg`` files.
        manifest: A CSV with columns path, wnid[, split][, label] instead of a folder.
        wordnet: WordNet folder for new concepts; None for the default; False for none.
        workers: Threads for hashing and decoding (default: 2 per CPU, at most 16).
        progress: Told how many files are hashed and decoded, as ``"decode images"``.

    Raises:
        ConfigError: Neither or both of folder and manifest were given.
        InputError: The folder or manifest is missing, malformed or holds an unknown wnid.
    """
    check_progress(progress)
    started = time.perf_counter()
    if (folder is None) == (manifest is None):
        raise ConfigError("give exactly one of an image folder or --manifest CSV")
    report = ImageIngestReport()
    if folder is not None:
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise InputError(f"image folder {root} does not exist")
        candidates, report.skipped = find_images(root)
        kind_format, name = "folder", str(root)
    else:
        mpath = Path(manifest).expanduser().resolve()  # type: ignore[arg-type]
        candidates = read_manifest(mpath)
        root, kind_format, name = mpath.parent, "manifest", str(mpath)
    report.n_found = len(candidates) + len(report.skipped)
    if not candidates:
        raise InputError(f"no images with a wnid found in {name}")

    n_workers = workers or min(16, 2 * (os.cpu_count() or 1))
    decoded: list[Decoded] = []
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        for done, (candidate, result) in enumerate(
            zip(candidates, pool.map(decode, candidates), strict=True), start=1
        ):
            if isinstance(result, str):
                report.skipped.append((str(candidate.path), result))
            else:
                decoded.append(result)
            if progress is not None:
                progress("decode images", done, len(candidates))

    usable = _refuse_cross_concept(decoded, report)
    first_by_hash: dict[str, Decoded] = {}
    unique: list[Decoded] = []
    for item in usable:
        seen = first_by_hash.get(item.sha256)
        if seen is not None:
            report.duplicates.append((str(item.candidate.path), str(seen.candidate.path)))
            continue
        first_by_hash[item.sha256] = item
        unique.append(item)

    spec = SourceSpec(
        kind="images",
        name=name,
        path=name,
        sha256=_source_sha(decoded, root),
        size_bytes=sum(d.size_bytes for d in decoded),
        format=kind_format,
        options={},
    )
    scope = root if folder is not None else None
    stale = _stale_images(wh, scope, candidates, decoded, first_by_hash, report)
    with wh.session() as session:
        _drop_or_move(session, stale, first_by_hash, report)
        present: dict[str, str] = {}
        hashes = list(first_by_hash)
        for start in range(0, len(hashes), 1000):
            chunk = hashes[start : start + 1000]
            found = session.execute(
                select(Image.sha256, Image.concept).where(Image.sha256.in_(chunk))
            ).all()
            present.update({digest: wnid for digest, wnid in found})
        unique = _refuse_registered_elsewhere(unique, present, report)
        new = [d for d in unique if d.sha256 not in present]
        report.already_present = len(unique) - len(new)
        labels: dict[str, str | None] = {}
        where: dict[str, str] = {}
        for item in new:
            c = item.candidate
            if labels.get(c.concept) is None:
                labels[c.concept] = c.label
                where.setdefault(c.concept, str(c.path))
        known = existing_concepts(session, labels)
        missing = [
            ConceptInput(c, label_to_name(label) if label else None, where=where[c])
            for c, label in labels.items()
            if c not in known
        ]
        if missing:
            db, report.wordnet = open_wordnet(wordnet)
            rows = describe(missing, db, try_imagenet_index(), "images")
            report.new_concepts, _ = upsert_concepts(session, rows)
        source, report.source_status, _ = record_source(session, spec)
        report.source_id, report.source_version = source.source_id, source.version
        if new:
            session.execute(
                insert(Image),
                [
                    {
                        "concept": d.candidate.concept,
                        "stimulus": d.candidate.stimulus_id,
                        "path": str(d.candidate.path),
                        "sha256": d.sha256,
                        "width": d.width,
                        "height": d.height,
                        "mode": d.mode,
                        "split": d.candidate.split,
                        "source_id": source.source_id,
                    }
                    for d in new
                ],
            )
        report.added = len(new)
        if not missing:
            report.wordnet = "WordNet not needed (no new concepts)"
    report.seconds = time.perf_counter() - started
    return report
