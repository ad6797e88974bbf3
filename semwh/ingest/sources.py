"""Provenance of ingested inputs: the ``sources`` table, content hashes and versions.

A source is identified by its kind and name (a word-model name, a space name, an image
folder). Ingesting the same content with the same options again finds the latest row and
changes nothing; different content (or options) under the same name becomes the next version,
never a silent overwrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Source, Space, VectorFile

CREATED = "created"
UNCHANGED = "unchanged"
#: A source ingested again, unchanged, to rewrite its damaged vector file.
REPAIRED = "repaired"
NEW_VERSION = "new version"


def canonical_options(options: dict[str, Any]) -> str:
    """Options as canonical JSON, so that equal options compare equal as text."""
    return json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class SourceSpec:
    """What an ingest read: the identity and content of its input."""

    kind: str
    name: str
    path: str
    sha256: str
    size_bytes: int | None
    format: str | None
    options: dict[str, Any]

    @property
    def options_json(self) -> str:
        return canonical_options(self.options)


def latest_source(session: Session, kind: str, name: str) -> Source | None:
    """The newest version of a named source, if any."""
    return session.scalars(
        select(Source)
        .where(Source.kind == kind, Source.name == name)
        .order_by(Source.version.desc())
        .limit(1)
    ).first()


def is_current(session: Session, spec: SourceSpec) -> Source | None:
    """The latest source row if it holds exactly this content and these options."""
    latest = latest_source(session, spec.kind, spec.name)
    if latest is not None and latest.sha256 == spec.sha256 and latest.options == spec.options_json:
        return latest
    return None


def record_source(session: Session, spec: SourceSpec) -> tuple[Source, str, int | None]:
    """Find or add the source row for ``spec`` in the caller's transaction.

    Returns:
        The row, the status (created, unchanged or new version) and the previous version
        number (None when there was none).
    """
    latest = latest_source(session, spec.kind, spec.name)
    options = spec.options_json
    if latest is None:
        return _add_source(session, spec, 1), CREATED, None
    if latest.sha256 == spec.sha256 and latest.options == options:
        return latest, UNCHANGED, latest.version
    previous = latest.version
    top = session.scalar(
        select(func.max(Source.version)).where(Source.kind == spec.kind, Source.name == spec.name)
    )
    version = int(top or 0) + 1
    # Content seen in an older version (a file changed back) keeps its row, which the
    # registry's uniqueness rule requires; it becomes the newest version again.
    older = session.scalars(
        select(Source).where(
            Source.kind == spec.kind,
            Source.name == spec.name,
            Source.sha256 == spec.sha256,
            Source.options == options,
        )
    ).first()
    if older is not None:
        older.version = version
        older.path = spec.path
        session.flush()
        return older, NEW_VERSION, previous
    return _add_source(session, spec, version), NEW_VERSION, previous


def _add_source(session: Session, spec: SourceSpec, version: int) -> Source:
    """Add ``spec`` as version ``version`` of its source (flushed, so it has its id)."""
    row = Source(
        kind=spec.kind,
        name=spec.name,
        path=spec.path,
        format=spec.format,
        size_bytes=spec.size_bytes,
        sha256=spec.sha256,
        options=spec.options_json,
        version=version,
    )
    session.add(row)
    session.flush()
    return row


def drop_space(wh: Warehouse, name: str) -> None:
    """Unregister a space (its row and its concept files) before a new version replaces it.

    A new version points at a new source row. DuckDB can neither change a foreign-key column
    of a row that other rows reference nor delete a row whose referencing rows were deleted
    in the same transaction, so the files' registrations go first, then the space row; the
    new version is stored as a new space. Call this only after the new input is validated.
    The Parquet files stay on disk like every replaced version's do.
    """
    with wh.session() as session:
        space = session.scalar(select(Space).where(Space.name == name))
        if space is None:
            return
        space_id = space.space_id
        session.execute(delete(VectorFile).where(VectorFile.space_id == space_id))
    with wh.session() as session:
        session.execute(delete(Space).where(Space.space_id == space_id))
