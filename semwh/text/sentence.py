"""A sentence-transformers model folder, loaded offline, and its own sentence embedding.

``semwh ingest words NAME SOURCE --format sentence-transformers``
(:func:`semwh.ingest.words.ingest_sentence_words`) stores the ``encode()`` of each concept's
text as a word space: the model's whole pipeline (pooling, dense layers, normalisation),
exactly what ``SentenceTransformer.encode`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from semwh.custom_code import refuse_custom_code
from semwh.errors import ConfigError, MissingDependencyError
from semwh.text.loaders import TextSource

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
    from semwh.text.loaders import _quiet

    refuse_custom_code(source.location)
    with _quiet():
        return SentenceTransformer(
            source.location, device=device, local_files_only=True, trust_remote_code=False
        )


def encode(model, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:  # noqa: ANN001
    """``model.encode(texts)`` as float32, without a progress bar."""
    out = model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)
