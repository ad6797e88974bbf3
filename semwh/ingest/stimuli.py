"""Inputs keyed by stimulus: per-image files matched to the registry's images, and the
storage of spaces and RDMs ingested at the image level.

A stimulus id is the id an image got at ingest (``semwh ingest images``: a manifest's
``stimulus`` column, else the file's stem), unique in the warehouse. Every row of a per-image
file names a registered image by it, once; the image's concept is the registry's. Rows are
stored sorted by stimulus in one vector file of kind ``images`` under the space's id, so
:func:`semwh.vectors.load_space` reads them at the image level. The space's content hash is
the hash of those per-image rows (stimulus ids and matrix): any change of them is a new
content, even one its concept means would not show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from semwh.analyze.design import check_level
from semwh.errors import DuplicateError, InputError
from semwh.ingest.keys import MAX_SHOWN, ConceptKeys, UnknownKey, listed_unknown, normalise
from semwh.vectors.store import (
    VectorFileInfo,
    content_sha256,
    register_space_images,
    space_images_relpath,
    space_levels,
    write_vector_file,
)
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image, Space, VectorFile

#: The key column of a per-image file.
STIMULUS = "stimulus"
#: The warehouse's id of an image: in a per-image file, checked, never a feature.
IMAGE_ID = "image_id"
CONCEPT_LEVEL = "concept"
IMAGE_LEVEL = "image"

_CHUNK = 1000  # stimulus ids per registry query


@dataclass(frozen=True)
class StimulusRows:
    """The rows of a per-image input matched to the registry's images, in stimulus order.

    Attributes:
        stimuli: The stimulus ids, sorted.
        image_ids: The image of each stimulus.
        concepts: The concept of each stimulus (the registry's).
        order: The input row of each stimulus (reorders the input's values).
    """

    stimuli: list[str]
    image_ids: np.ndarray
    concepts: list[str]
    order: np.ndarray

    @property
    def n_concepts(self) -> int:
        return len(set(self.concepts))


def match_stimuli(
    session: Session, keys: Sequence[str], places: Sequence[str], what: str
) -> StimulusRows:
    """Match a per-image input's keys with the registry's stimulus ids.

    Args:
        session: An open registry session.
        keys: The stimulus id of each input row, as read.
        places: Where each row was read (``"roi.csv line 4"``), for messages.
        what: The input, for messages (``"space file roi.csv"``).

    Raises:
        InputError: An empty key; a stimulus given twice (naming both places); stimulus ids
            that no registered image has (all in one message, each with its place and the
            nearest registered stimulus ids).
    """
    ids: list[str] = []
    for raw, place in zip(keys, places, strict=True):
        key = normalise(raw) if isinstance(raw, str) else ""
        if not key:
            raise InputError(f"{place}: empty stimulus id")
        ids.append(key)
    found: dict[str, tuple[int, str]] = {}
    # A registered id is matched as written (a file stem in decomposed Unicode, as macOS
    # writes them, or with surrounding spaces), else by its normalised form.
    exact = [raw if isinstance(raw, str) else key for raw, key in zip(keys, ids, strict=True)]
    wanted = sorted(set(ids) | set(exact))
    for start in range(0, len(wanted), _CHUNK):
        rows = session.execute(
            select(Image.stimulus, Image.image_id, Image.concept).where(
                Image.stimulus.in_(wanted[start : start + _CHUNK])
            )
        ).tuples()
        found.update((stimulus, (image_id, concept)) for stimulus, image_id, concept in rows)
    ids = [e if e in found else key for e, key in zip(exact, ids, strict=True)]
    if any(key not in found for key in ids):
        by_form: dict[str, list[tuple[str, int, str]]] = {}
        for stimulus, image_id, concept in session.execute(
            select(Image.stimulus, Image.image_id, Image.concept)
        ).tuples():
            by_form.setdefault(normalise(stimulus), []).append((stimulus, image_id, concept))
        for i, key in enumerate(ids):
            same = by_form.get(key, []) if key not in found else []
            if len(same) == 1:
                stimulus, image_id, concept = same[0]
                found[stimulus] = (image_id, concept)
                ids[i] = stimulus
    first: dict[str, int] = {}
    for i, (key, place) in enumerate(zip(ids, places, strict=True)):
        j = first.setdefault(key, i)
        if j != i:
            raise InputError(
                f"{place}: stimulus {key!r} appears again (first at {places[j]}); each "
                "stimulus may appear once"
            )
    unknown = [i for i, key in enumerate(ids) if key not in found]
    if unknown:
        raise InputError(_unknown_message(session, what, [(ids[i], places[i]) for i in unknown]))
    order = np.asarray(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
    return StimulusRows(
        stimuli=[ids[i] for i in order],
        image_ids=np.asarray([found[ids[i]][0] for i in order], dtype=np.int64),
        concepts=[found[ids[i]][1] for i in order],
        order=order,
    )


def check_noted_concepts(
    session: Session,
    stimuli: StimulusRows,
    noted: Sequence[str],
    places: Sequence[str],
    what: str,
) -> None:
    """Refuse a per-image file whose own ``concept`` column disagrees with the concepts of
    the registered images its stimulus ids name: the ids are then likely another numbering
    of the images than the warehouse's, and every number computed over them would be wrong.

    A value agrees when it is the image's concept id, display name or WordNet id (case and
    surrounding spaces aside); an empty value is not checked.

    Args:
        noted: The file's concept column, in input order.
        places: Where each row was read.

    Raises:
        InputError: The first disagreeing rows with their stimulus, the file's concept and
            the warehouse's.
    """
    from semwh.warehouse.models import Concept

    concepts = sorted(set(stimuli.concepts))
    forms: dict[str, set[str]] = {}
    for start in range(0, len(concepts), _CHUNK):
        for concept, name, wnid in session.execute(
            select(Concept.concept, Concept.name, Concept.wnid).where(
                Concept.concept.in_(concepts[start : start + _CHUNK])
            )
        ).tuples():
            forms[concept] = {normalise(v).casefold() for v in (concept, name, wnid) if v}
    registered = [""] * len(noted)
    for position, row in enumerate(stimuli.order):
        registered[int(row)] = stimuli.concepts[position]
    stimulus_of = [""] * len(noted)
    for position, row in enumerate(stimuli.order):
        stimulus_of[int(row)] = stimuli.stimuli[position]
    bad = []
    for i, note in enumerate(noted):
        key = normalise(note).casefold() if isinstance(note, str) else ""
        if key and key not in forms.get(registered[i], {registered[i].casefold()}):
            bad.append(i)
    if bad:
        listed = _first_rows(
            bad,
            lambda i: (
                f"{places[i]}: stimulus {stimulus_of[i]!r} says concept {noted[i]!r}, "
                f"the warehouse's image {stimulus_of[i]!r} is of {registered[i]!r}"
            ),
        )
        raise InputError(
            f"{what}: the concept column disagrees with the warehouse for {len(bad)} of "
            f"{len(noted)} stimuli ({listed}). Nothing was stored; check that the file's "
            "stimulus ids are the warehouse's (`semwh sql \"SELECT stimulus, concept FROM "
            'images"`), or drop the concept column'
        )


def check_noted_image_ids(
    stimuli: StimulusRows, noted: Sequence[str], places: Sequence[str], what: str
) -> None:
    """Refuse a per-image file whose own ``image_id`` column names other images than its
    stimulus ids do (an empty value is not checked): the column is the warehouse's id of
    each image, never a feature.

    Raises:
        InputError: The first disagreeing rows with both ids.
    """
    registered = [0] * len(noted)
    stimulus_of = [""] * len(noted)
    for position, row in enumerate(stimuli.order):
        registered[int(row)] = int(stimuli.image_ids[position])
        stimulus_of[int(row)] = stimuli.stimuli[position]
    bad = []
    for i, value in enumerate(noted):
        text = str(value).strip()
        if not text:
            continue
        try:
            same = float(text) == registered[i]
        except ValueError:
            same = False
        if not same:
            bad.append(i)
    if bad:
        listed = _first_rows(
            bad,
            lambda i: (
                f"{places[i]}: stimulus {stimulus_of[i]!r} has image_id {noted[i]!r}, "
                f"the warehouse's is {registered[i]}"
            ),
        )
        raise InputError(
            f"{what}: the image_id column disagrees with the warehouse for {len(bad)} of "
            f"{len(noted)} stimuli ({listed}). Nothing was stored; image_id is the "
            "warehouse's id of each image (never a feature): correct it or drop the column"
        )


def _first_rows(bad: Sequence[int], line: Callable[[int], str]) -> str:
    """The first rows of ``bad`` described by ``line``, then how many more there are."""
    listed = "; ".join(line(i) for i in bad[:MAX_SHOWN])
    more = f"; and {len(bad) - MAX_SHOWN} more" if len(bad) > MAX_SHOWN else ""
    return listed + more


def _unknown_message(session: Session, what: str, unknown: list[tuple[str, str]]) -> str:
    """One line listing stimulus ids no image has, with the nearest registered ones (found
    by the nearest-id search of concept keys, over the stimulus ids)."""
    registered = session.scalars(select(Image.stimulus)).all()
    hints = ConceptKeys((s, s) for s in registered)
    listed = [
        UnknownKey(key, place, 1, hints.nearest(key) if i < MAX_SHOWN else ())
        for i, (key, place) in enumerate(unknown)
    ]
    n = len(unknown)
    if not registered:
        hint = "the warehouse has no images yet: run `semwh ingest images` first"
    else:
        hint = (
            "check the spelling, or run `semwh ingest images` first if they are new images "
            "(a manifest's stimulus column sets the ids)"
        )
    return (
        f"{what}: {n} unknown stimulus id{'' if n == 1 else 's'}, not the stimulus of any "
        f"registered image: {listed_unknown(listed)}. Nothing was stored; {hint}"
    )


def image_content(stimuli: StimulusRows, matrix: np.ndarray) -> str:
    """The content hash of a space ingested at the image level: its stimulus ids and its
    per-image matrix as stored (float32), rows in stimulus order."""
    return content_sha256(stimuli.stimuli, matrix)


def check_level_change(session: Session, existing: Space | None, level: str, replace: bool) -> None:
    """Refuse storing ``existing`` at another level than it was ingested at without
    ``replace``.

    A space ingested at the image level has per-image rows (and concept means, unless it is
    an RDM between stimuli), a concept-level one has none: storing either over the other
    adds or drops a level that results and run files rely on, so it takes --replace.

    Raises:
        DuplicateError: Names the space, both levels and the option.
    """
    check_level(level)
    if existing is None or replace or existing.kind in ("layer", "text-layer", "word"):
        return
    stored = IMAGE_LEVEL if IMAGE_LEVEL in space_levels(session, existing) else CONCEPT_LEVEL
    if stored == level:
        return
    what = (
        "one vector per concept"
        if stored == CONCEPT_LEVEL
        else "per-image rows keyed by stimulus, which a concept-level version drops"
    )
    raise DuplicateError(
        f"space {existing.name!r} is registered at the {stored} level ({what}); storing it at "
        f"the {level} level replaces it: pass replace=True (--replace), or choose another name"
    )


def write_images(
    wh: Warehouse,
    name: str,
    stimuli: StimulusRows,
    matrix: np.ndarray,
    digest: str,
    metadata: dict[str, Any],
) -> VectorFileInfo:
    """Write (not register) the per-image file of space ``name``: one row per stimulus, the
    image's concept as the concept column."""
    return write_vector_file(
        wh,
        space_images_relpath(name, digest),
        name,
        stimuli.concepts,
        matrix,
        image_ids=stimuli.image_ids,
        metadata={"kind": "images", "level": IMAGE_LEVEL, **metadata},
    )


def register_image_only(
    session: Session,
    name: str,
    kind: str,
    info: VectorFileInfo,
    digest: str,
    dim: int,
    n_concepts: int,
) -> Space:
    """Register a space whose only data are its per-image rows (an RDM between stimuli), in
    the caller's transaction: a new row, or the stored one of this name with its content
    columns and files replaced (its concept files too: it has no concept level any more)."""
    space = session.scalar(select(Space).where(Space.name == name))
    fields = dict(kind=kind, dim=dim, n_concepts=n_concepts, content_sha256=digest)
    if space is None:
        space = Space(name=name, **fields)
        session.add(space)
    else:
        for key, value in fields.items():
            setattr(space, key, value)
        session.execute(
            delete(VectorFile).where(
                VectorFile.space_id == space.space_id, VectorFile.kind == "concepts"
            )
        )
    session.flush()
    register_space_images(session, space, info)
    return space
