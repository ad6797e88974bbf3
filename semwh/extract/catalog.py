"""What ``semwh models`` shows: the model sources, their models, and a model's default probes.

:func:`list_models` names the models of each source (whether its package is installed, and
what to install if not); :func:`describe_model` builds one model with random weights (nothing
is downloaded), runs the probe forward pass and returns each default probe layer with its
output shape, layout and pooled dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from semwh.errors import ConfigError, MissingDependencyError
from semwh.extract.sources import (
    BUILTIN,
    load_plugin,
    plugins,
    shadowing,
    shadowing_reason,
    split_source,
)
from semwh.extract.spec import ModelSource, SourceModels


@dataclass(frozen=True)
class ProbeInfo:
    """One default probe layer of a model."""

    module: str
    output_shape: tuple[int, ...]
    layout: str
    pooling: str
    dim: int


@dataclass(frozen=True)
class ModelInfo:
    """A model's identity and default probes (random weights, nothing downloaded)."""

    name: str
    architecture: str
    source: str
    preprocessing: dict[str, Any]
    n_parameters: int
    probes: list[ProbeInfo]
    logits_layer: str | None
    n_classes: int | None = None


def list_models(pattern: str | None = None) -> list[SourceModels]:
    """Every source and its models whose reference matches a glob ``pattern``.

    ``pattern`` may carry a source prefix (``timm:*vit*``) to list one source. With a pattern,
    an installed source that lists its models and has none matching is left out. An outside
    source that cannot be loaded is listed with the reason.
    """
    source_filter, glob = (None, pattern or "*")
    if pattern and ":" in pattern:
        source_filter, glob = split_source(pattern)
        if not pattern.startswith(f"{source_filter}:"):
            source_filter, glob = None, pattern
    candidates: list[ModelSource | SourceModels] = list(BUILTIN)
    for ep in plugins():
        try:
            candidates.append(load_plugin(ep))
        except ConfigError as exc:  # listed with the reason, so the other sources still show
            candidates.append(SourceModels(ep.name, False, [], str(exc), broken=True))
    for ep in shadowing():
        candidates.append(SourceModels(ep.name, False, [], shadowing_reason(ep), broken=True))
    out: list[SourceModels] = []
    for candidate in candidates:
        name = candidate.name if isinstance(candidate, ModelSource) else candidate.source
        if source_filter is not None and source_filter != name:
            continue
        if isinstance(candidate, SourceModels):
            out.append(candidate)
            continue
        entry = _offer(candidate, glob)
        if pattern and entry.available and not entry.models and _lists_models(candidate):
            continue
        out.append(entry)
    return out


def _lists_models(source: ModelSource) -> bool:
    return type(source).models is not ModelSource.models


def _offer(source: ModelSource, glob: str) -> SourceModels:
    """What one source offers, or what to install when its package is missing."""
    missing = SourceModels(source.name, False, [], f"not installed: {source.install}")
    if not source.available():
        return missing
    try:
        models = source.models(glob)
    except MissingDependencyError:
        return missing
    return SourceModels(source.name, True, models or [], source.note)


def describe_model(
    reference: str,
    *,
    layers: str | None = None,
    pooling: str = "avg",
    token_pooling: str = "mean",
    preprocessing: Any = None,
    layouts: Any = None,
) -> ModelInfo:
    """Build ``reference`` with random weights and list its probe layers (default or given).

    Raises:
        NotFoundError: Unknown model.
        MissingDependencyError: The source's package is not installed.
        ConfigError: An ambiguous layout (the message says how to declare it).
    """
    from semwh.extract.batches import ProbedModel, probe_shapes
    from semwh.extract.hooks import parse_pooling
    from semwh.extract.networks import load_model, resolve_layers

    loaded = load_model(reference, weights="none", preprocessing=preprocessing, layouts=layouts)
    pool = parse_pooling(pooling, token_pooling)
    probe = resolve_layers(loaded, layers)
    probed = ProbedModel(loaded.module, probe, pool, loaded.preprocessing, torch.device("cpu"))
    try:
        order, shapes = probe_shapes(probed, loaded.layouts, drop_unused=layers is None)
    finally:
        probed.close()
    assert probed.layouts is not None
    probes = [
        ProbeInfo(
            module=m,
            output_shape=shapes[m],
            layout=str(probed.layouts[m]),
            pooling=pool.label(probed.layouts[m]),
            dim=pool.dim(probed.layouts[m], shapes[m]),
        )
        for m in order
    ]
    name = loaded.name.removesuffix("-random")
    return ModelInfo(
        name=name,
        architecture=loaded.architecture,
        source=loaded.source,
        preprocessing=loaded.preprocessing.to_dict(),
        n_parameters=loaded.n_parameters,
        probes=probes,
        logits_layer=loaded.logits_layer,
        n_classes=probed.n_classes,
    )
