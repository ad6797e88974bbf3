"""The text of each concept a language model reads: templates over registry fields.

A template is one of the named ones below or any text with ``{lemma}``, ``{name}`` or
``{gloss}`` fields. ``{lemma}`` is the concept's first WordNet lemma (as word vectors take the
first lemma with a token; a tokenizer has a token for every lemma), with ``_`` read as a
space; without lemmas it is the first part of the concept's name. A concept without a gloss
gets no text from a template that needs one, and is left out of the spaces (and reported).
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass

from semwh.errors import ConfigError

#: Named templates; any other text with fields of FIELDS is a template too.
TEMPLATES: dict[str, str] = {
    "lemma": "{lemma}",
    "photo": "a photo of a {lemma}",
    "gloss": "{gloss}",
    "lemma-gloss": "{lemma}: {gloss}",
}
FIELDS = ("lemma", "name", "gloss")


@dataclass(frozen=True)
class ConceptFields:
    """The registry fields a template can use, for one concept."""

    concept: str
    lemma: str
    name: str
    gloss: str | None


def resolve_template(template: str) -> str:
    """The template text of a named template, or ``template`` itself after checking its fields.

    Raises:
        ConfigError: A template with no field, an unknown field, a field with a conversion
            or format spec (``{lemma!r}``, ``{lemma:>9}``) or broken braces.
    """
    text = TEMPLATES.get(template, template)
    try:
        parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)]
    except ValueError as exc:
        raise ConfigError(f"template {template!r} is not valid: {exc}") from exc
    # A conversion or format spec ({lemma!r:>99999999}) can make a text of any length: the
    # fields are inserted as they are, nothing else.
    for field, spec, conversion in parts:
        if spec or conversion:
            raise ConfigError(
                f"template {template!r}: {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} has a conversion or format spec; write the "
                f"field alone ({{{field}}})"
            )
    fields = [f for f, _, _ in parts if f is not None]
    unknown = sorted({f for f in fields if f not in FIELDS})
    if unknown or not fields:
        raise ConfigError(
            f"template {template!r} must use the fields {{lemma}}, {{name}} or {{gloss}}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + f"; named templates: {', '.join(TEMPLATES)}"
        )
    return text


def concept_fields(concept: str, name: str, lemmas: str | None, gloss: str | None) -> ConceptFields:
    """The template fields of a concept row (``lemmas`` as stored: a JSON list or None)."""
    listed = [str(x) for x in json.loads(lemmas)] if lemmas else []
    first = listed[0] if listed else name.split(",")[0]
    lemma = " ".join(first.replace("_", " ").split())
    return ConceptFields(concept, lemma, name.strip(), gloss.strip() if gloss else None)


def concept_texts(
    concepts: Sequence[ConceptFields], templates: Sequence[str]
) -> tuple[list[str], list[list[str]], list[str]]:
    """Texts of every concept under every template.

    Returns:
        The concept_ids that have every text, their texts (one list per template, in concept
        order), and the concept_ids left out for lack of a field (a gloss).
    """
    resolved = [resolve_template(t) for t in templates]
    if not resolved:
        raise ConfigError("at least one template is needed (e.g. lemma)")
    kept: list[str] = []
    texts: list[list[str]] = [[] for _ in resolved]
    missing: list[str] = []
    for c in concepts:
        needs_gloss = any("{gloss}" in t for t in resolved)
        if needs_gloss and not c.gloss:
            missing.append(c.concept)
            continue
        kept.append(c.concept)
        for i, t in enumerate(resolved):
            texts[i].append(t.format(lemma=c.lemma, name=c.name, gloss=c.gloss or ""))
    return kept, texts, missing
