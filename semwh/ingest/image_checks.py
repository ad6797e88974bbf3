"""Image files checked against their ingest record before their pixels are used.

An image is registered with the SHA-256 of its bytes; extraction and ``semwh verify`` hash
the file again and refuse one that is gone or whose bytes differ (a photo replaced on disk
after ingest), naming the image and how to repair it: restore the file, or ingest its folder
(or manifest) again, which takes the new file in place of the old one or drops the image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from semwh.errors import InputError
from semwh.hashing import sha256_file
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image, Source


@dataclass(frozen=True)
class RecordedImage:
    """What the registry says of one image: its id, concept, path and content hash."""

    image_id: int
    concept: str
    path: str
    sha256: str


def image_file(wh: Warehouse, path: str) -> Path:
    """An image's registry path as a readable path (relative paths are under the warehouse)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else wh.root / candidate


def image_problem(wh: Warehouse, image: RecordedImage) -> str | None:
    """Why the file of ``image`` is not the one ingested (None: same bytes)."""
    path = image_file(wh, image.path)
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        return "is missing from disk"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if digest != image.sha256:
        return (
            f"changed on disk since it was ingested (SHA-256 {digest[:12]}..., "
            f"recorded {image.sha256[:12]}...)"
        )
    return None


def image_problems(
    wh: Warehouse, images: Sequence[RecordedImage]
) -> list[tuple[RecordedImage, str]]:
    """The images whose files are gone or differ, with why (hashed on a few threads)."""
    if not images:
        return []
    workers = min(8, len(images), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        found = list(pool.map(lambda image: image_problem(wh, image), images))
    return [(image, problem) for image, problem in zip(images, found, strict=True) if problem]


def repair_hint(wh: Warehouse, image_id: int) -> str:
    """How to repair an image whose file is gone or changed: the ingest command of its source."""
    with wh.session() as session:
        source = session.scalar(
            select(Source)
            .join(Image, Image.source_id == Source.source_id)
            .where(Image.image_id == image_id)
        )
    if source is not None and source.format == "manifest":
        command = f"semwh ingest images --manifest {source.path}"
    elif source is not None:
        command = f"semwh ingest images {source.path}"
    else:
        command = "semwh ingest images FOLDER"
    return (
        f"restore the file, or run `{command}` to take the file now on disk in its place "
        "(or drop the image if it is gone), then run the extraction again"
    )


def describe(image: RecordedImage, problem: str) -> str:
    return f"image {image.path} (image_id {image.image_id}, concept {image.concept}) {problem}"


def check_images(wh: Warehouse, images: Sequence[RecordedImage]) -> None:
    """Refuse images whose files are gone or differ from their ingest record.

    Raises:
        InputError: The first such image, with how many there are and the repair.
    """
    bad = image_problems(wh, images)
    if not bad:
        return
    image, problem = bad[0]
    more = f" (and {len(bad) - 1} more image(s) of this batch)" if len(bad) > 1 else ""
    raise InputError(f"{describe(image, problem)}{more}: {repair_hint(wh, image.image_id)}")


# -- ingest: one concept per photo, and the folder's images that left the disk -----------------


def cross_concept_copies(
    items: Sequence[tuple[str, str, str]],
) -> dict[str, list[tuple[str, str]]]:
    """Photos given under more than one concept in one input.

    Args:
        items: (path, concept, sha256) of each decoded file.

    Returns:
        sha256 -> [(path, concept), ...] for each content found under two or more concepts.
    """
    by_hash: dict[str, list[tuple[str, str]]] = {}
    for path, concept, digest in items:
        by_hash.setdefault(digest, []).append((path, concept))
    return {
        digest: places
        for digest, places in by_hash.items()
        if len({concept for _, concept in places}) > 1
    }


def in_scope(recorded_path: str, root: Path | None, listed: set[str]) -> bool:
    """Whether a registered image belongs to the folder (or manifest) being ingested again."""
    if recorded_path in listed:
        return True
    return root is not None and recorded_path.startswith(str(root) + os.sep)


def stale_reason(path: str, skipped: dict[str, str]) -> str:
    """Why a registered image of the ingested folder is no longer the file on disk."""
    if path in skipped:
        return f"now unreadable ({skipped[path]})"
    return "gone from disk" if not os.path.lexists(path) else "changed on disk"
