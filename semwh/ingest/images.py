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

from sqlalchemy import insert, select

from semwh.errors import ConfigError, InputError
from semwh.ingest.concepts import check_wnid, describe, existing_concepts, upsert_concepts
from semwh.ingest.files import MAX_IMAGE_BYTES, not_regular, read_bytes
from semwh.ingest.formats import read_utf8_text
from semwh.ingest.imagenet import try_imagenet_index
from semwh.ingest.sources import SourceSpec, record_source
from semwh.ingest.wordnet import WNID_RE, open_wordnet
from semwh.progress import Progress, check_progress
from semwh.resources import image_size_problem
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image

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
    path: Path
    wnid: str
    label: str | None
    split: str | None = None


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
        new_concepts: Concepts created for these images.
        source_status: created, unchanged or new version.
    """

    n_found: int = 0
    added: int = 0
    already_present: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
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
        digest.update(f"{rel}\t{item.sha256}\t{c.wnid}\t{c.split or ''}\n".encode())
    return digest.hexdigest()


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

    first_by_hash: dict[str, Decoded] = {}
    unique: list[Decoded] = []
    for item in decoded:
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
    with wh.session() as session:
        present: set[str] = set()
        hashes = list(first_by_hash)
        for start in range(0, len(hashes), 1000):
            chunk = hashes[start : start + 1000]
            present.update(session.scalars(select(Image.sha256).where(Image.sha256.in_(chunk))))
        new = [d for d in unique if d.sha256 not in present]
        report.already_present = len(unique) - len(new)
        labels: dict[str, str | None] = {}
        where: dict[str, str] = {}
        for item in new:
            c = item.candidate
            if labels.get(c.wnid) is None:
                labels[c.wnid] = c.label
                where.setdefault(c.wnid, str(c.path))
        missing = {w: labels[w] for w in labels if w not in existing_concepts(session, labels)}
        if missing:
            db, report.wordnet = open_wordnet(wordnet)
            rows = describe(missing, db, try_imagenet_index(), "images", where)
            report.new_concepts, _ = upsert_concepts(session, rows)
        source, report.source_status, _ = record_source(session, spec)
        report.source_id, report.source_version = source.source_id, source.version
        if new:
            session.execute(
                insert(Image),
                [
                    {
                        "wnid": d.candidate.wnid,
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
