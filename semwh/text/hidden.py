"""Every hidden layer of a text model over a list of texts, pooled over tokens.

Pooling (DESIGN "Pooling"): ``mean`` over the non-padding tokens (special tokens included,
as sentence-transformers pools), ``cls`` the first non-padding token, ``last`` the last
non-padding token (the summary token of a causal model). Hidden state 0 is the embedding
layer's output, state k the output of block k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semwh.errors import ConfigError
from semwh.text.loaders import LoadedTextModel

POOLINGS = ("mean", "cls", "last")


@dataclass(frozen=True)
class HiddenLayers:
    """Pooled hidden states of texts.

    Attributes:
        layers: One (n_texts x dim) float64 array per hidden state, embeddings first.
        n_tokens: Tokens of each text before truncation (special tokens included).
        truncated: Indices of the texts longer than the maximum length.
    """

    layers: list[np.ndarray]
    n_tokens: list[int]
    truncated: list[int]


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown text pooling {pooling!r} (choose {', '.join(POOLINGS)})")
    return pooling


def pool_tokens(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """Pool a (batch x tokens x dim) array over its tokens where ``mask`` is 1 (float64)."""
    check_pooling(pooling)
    hidden = np.asarray(hidden, dtype=np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if pooling == "mean":
        return (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    positions = np.arange(mask.shape[1])
    if pooling == "cls":
        index = np.where(mask > 0, positions, mask.shape[1]).min(axis=1)
    else:
        index = np.where(mask > 0, positions, -1).max(axis=1)
    return hidden[np.arange(hidden.shape[0]), index]


def hidden_layers(
    loaded: LoadedTextModel,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    batch_size: int = 64,
    device: str = "cpu",
) -> HiddenLayers:
    """Run the model over ``texts`` in batches and pool every hidden state.

    Raises:
        ConfigError: An unknown pooling, no texts, or a model that returns no hidden states.
    """
    import torch

    check_pooling(pooling)
    if not texts:
        raise ConfigError("no texts to embed")
    tok = loaded.tokenizer
    lengths = [len(ids) for ids in tok(list(texts), truncation=False)["input_ids"]]
    truncated = [i for i, n in enumerate(lengths) if n > loaded.max_length]
    pooled: list[list[np.ndarray]] = []
    size = max(1, int(batch_size))
    for start in range(0, len(texts), size):
        batch = tok(
            list(texts[start : start + size]),
            padding=True,
            truncation=True,
            max_length=loaded.max_length,
            return_tensors="pt",
        )
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            out = loaded.model(**batch, output_hidden_states=True)
        states = getattr(out, "hidden_states", None)
        if not states:
            raise ConfigError(f"text model {loaded.source.spec!r} returns no hidden states")
        mask = batch["attention_mask"].cpu().numpy()
        for k, state in enumerate(states):
            if len(pooled) <= k:
                pooled.append([])
            pooled[k].append(pool_tokens(state.float().cpu().numpy(), mask, pooling))
    return HiddenLayers(
        layers=[np.concatenate(parts, axis=0) for parts in pooled],
        n_tokens=lengths,
        truncated=truncated,
    )
