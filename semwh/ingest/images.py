"""Images: listed from a folder (``DIR/<concept>/*`` or flat ``<concept>_<rest>.<ext>``, see
:mod:`semwh.ingest.image_layouts`) or a manifest, hashed and decoded in a thread pool,
deduplicated by SHA-256 and inserted in one transaction together with any concepts they
introduce; each image gets a stimulus id, unique in the warehouse."""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, InputError
from semwh.ingest.concepts import (
    ConceptInput,
    describe,
    existing_concepts,
    registry_keys,
    upsert_concepts,
)
from semwh.ingest.files import MAX_IMAGE_BYTES, read_bytes
from semwh.ingest.image_checks import cross_concept_copies, in_scope, stale_reason
from semwh.ingest.image_layouts import (
    FLAT_NAME,
    ImageListing,
    read_image_manifest,
    scan_images,
)
from semwh.ingest.imagenet import try_imagenet_index
from semwh.ingest.keys import ConceptKeys, default_name
from semwh.ingest.sources import SourceSpec, record_source
from semwh.ingest.wordnet import open_wordnet
from semwh.progress import Progress, check_progress
from semwh.resources import image_size_problem, is_limit_reason
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image, Prediction, RecoveryImage


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
        stimuli_kept: (path, what) for registered images the input gives another stimulus
            id (a manifest's new id, a renamed file's stem): the stored id stays.
        new_concepts: Concepts created for these images.
        layout: How the images were listed: ``folder``, ``prefix`` or ``manifest``.
        n_concepts: Concepts of the images listed.
        new_near_known: (new concept, nearest registered ids) for new concepts close to
            concepts registered before (a misspelt folder or name?).
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
    stimuli_kept: list[tuple[str, str]] = field(default_factory=list)
    new_concepts: list[str] = field(default_factory=list)
    new_near_known: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    layout: str = ""
    n_concepts: int = 0
    source_id: int | None = None
    source_version: int | None = None
    source_status: str = ""
    wordnet: str = ""
    seconds: float = 0.0


def _candidates(listing: ImageListing, keys: ConceptKeys) -> list[Candidate]:
    """The listing's images with their concept keys read by the one rule of keys: a
    registered concept's id, else its exact name or WordNet id when only one concept has
    it; any other key is the id of a new concept."""
    match = keys.match([(e.concept_key, e.where) for e in listing.entries], "images")
    return [
        Candidate(e.path, found or e.concept_key, e.label, e.split, e.stimulus)
        for e, found in zip(listing.entries, match.ids, strict=True)
    ]


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


def _refuse_taken_stimuli(
    session: Session, new: list[Decoded], report: ImageIngestReport
) -> list[Decoded]:
    """``new`` less the files whose stimulus id is already another image's (each listed in
    ``report.conflicts``): a stimulus id names one image in the warehouse."""
    wanted = [d.candidate.stimulus_id for d in new]
    taken: dict[str, str] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        rows = session.execute(
            select(Image.stimulus, Image.path).where(Image.stimulus.in_(chunk))
        ).tuples()
        taken.update(rows.all())
    kept = []
    for item in new:
        other = taken.get(item.candidate.stimulus_id)
        if other is None:
            kept.append(item)
            continue
        report.conflicts.append(
            (
                str(item.candidate.path),
                f"stimulus id {item.candidate.stimulus_id!r} is already the id of image "
                f"{other}: not stored (give this set a manifest with a stimulus column)",
            )
        )
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
    layout: str | None = None,
    wordnet: str | os.PathLike[str] | bool | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImageIngestReport:
    """Ingest image files: path, SHA-256, size, mode and stimulus id; new concepts are
    created.

    Each image gets a stimulus id, unique in the warehouse: the manifest's ``stimulus``, else
    the file's stem. Re-running adds only files whose content is new. Files that cannot be
    read or decoded are listed in the report and skipped.

    Args:
        wh: The warehouse.
        folder: One folder per concept (``DIR/<concept>/*``, THINGS, ImageFolder) or flat
            ``<concept>_<rest>.<ext>`` files (ImageNet's ``<wnid>_<id>_<label>.jpg``).
        manifest: A CSV, TSV or Parquet file with columns path, concept (or wnid) and
            optionally stimulus, split and label, instead of a folder.
        layout: ``folder`` or ``prefix``; None detects it from where the images sit.
        wordnet: WordNet folder for new concepts; None for the default; False for none.
        workers: Threads for hashing and decoding (default: 2 per CPU, at most 16).
        progress: Told how many files are hashed and decoded, as ``"decode images"``.

    Raises:
        ConfigError: Neither or both of folder and manifest were given, or an unknown layout.
        InputError: The folder or manifest is missing or malformed, its layout cannot be
            told, or two of its images share a stimulus id.
    """
    check_progress(progress)
    started = time.perf_counter()
    if (folder is None) == (manifest is None):
        raise ConfigError("give exactly one of an image folder or --manifest CSV")
    report = ImageIngestReport()
    with wh.session() as session:
        keys = registry_keys(session)
    if folder is not None:
        root = Path(folder).expanduser().resolve()
        listing = scan_images(root, layout=layout, known_concepts=keys)
        kind_format, name = "folder", str(root)
    else:
        if layout is not None:
            raise ConfigError("--layout reads a folder; a manifest names each image's concept")
        mpath = Path(manifest).expanduser().resolve()  # type: ignore[arg-type]
        listing = read_image_manifest(mpath)
        root, kind_format, name = mpath.parent, "manifest", str(mpath)
    report.layout = listing.layout
    report.skipped = list(listing.skipped)
    candidates = _candidates(listing, keys)
    report.n_concepts = len({c.concept for c in candidates})
    report.n_found = len(candidates) + len(report.skipped)
    if not candidates:
        raise InputError(
            f"no images found in {name} (layout {listing.layout}"
            + (
                f"; {len(report.skipped)} files skipped, see the list above"
                if report.skipped
                else ""
            )
            + ")"
        )

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
        stored_stimuli: dict[str, set[str]] = {}
        hashes = list(first_by_hash)
        for start in range(0, len(hashes), 1000):
            chunk = hashes[start : start + 1000]
            found = session.execute(
                select(Image.sha256, Image.concept, Image.stimulus).where(Image.sha256.in_(chunk))
            ).all()
            for digest, concept, stimulus in found:
                present[digest] = concept
                stored_stimuli.setdefault(digest, set()).add(stimulus)
        unique = _refuse_registered_elsewhere(unique, present, report)
        for item in unique:
            stored = stored_stimuli.get(item.sha256)
            if stored and item.candidate.stimulus_id not in stored:
                report.stimuli_kept.append(
                    (
                        str(item.candidate.path),
                        f"registered as stimulus {min(stored)!r}; the input's "
                        f"{item.candidate.stimulus_id!r} is not applied",
                    )
                )
        new = _refuse_taken_stimuli(session, [d for d in unique if d.sha256 not in present], report)
        report.already_present = len([d for d in unique if d.sha256 in present])
        labels: dict[str, str | None] = {}
        where: dict[str, str] = {}
        for item in new:
            c = item.candidate
            if labels.get(c.concept) is None:
                labels[c.concept] = c.label
                where.setdefault(c.concept, str(c.path))
        known = existing_concepts(session, labels)
        missing = [
            ConceptInput(c, default_name(label) if label else None, where=where[c])
            for c, label in labels.items()
            if c not in known
        ]
        if missing:
            db, report.wordnet = open_wordnet(wordnet)
            rows = describe(missing, db, try_imagenet_index(), "images")
            report.new_concepts, _ = upsert_concepts(session, rows)
            if len(keys):
                for concept in report.new_concepts:
                    near = keys.nearest(concept)
                    if near:
                        report.new_near_known.append((concept, near))
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
