"""What ``semwh models`` shows: the model sources, their models, and a model's default probes.

:func:`list_models` names the models of each source (whether its package is installed, and
what to install if not); :func:`describe_model` builds one model with random weights (nothing
is downloaded), runs the probe forward pass and returns each default probe layer with its
output shape, layout and pooled dimension.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import torch

_INSTALL = "pip install 'semwh[vision]'"


@dataclass(frozen=True)
class SourceModels:
    """One source's models.

    Attributes:
        source: ``torchvision``, ``timm``, ``hf`` or ``module``.
        available: Whether its package is installed.
        models: Model references matching the pattern (empty for hf and module).
        note: How its models are named, or what to install.
    """

    source: str
    available: bool
    models: list[str] = field(default_factory=list)
    note: str = ""


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

    ``pattern`` may carry a source prefix (``timm:*vit*``) to list one source.
    """
    from semwh.extract.models import available_models
    from semwh.extract.sources import split_source

    source_filter, glob = (None, pattern or "*")
    if pattern and ":" in pattern:
        source_filter, glob = split_source(pattern)
        if not pattern.startswith(f"{source_filter}:"):
            source_filter, glob = None, pattern
    out: list[SourceModels] = []

    def wanted(source: str) -> bool:
        return source_filter is None or source_filter == source

    if wanted("torchvision"):
        names = [n for n in available_models() if fnmatch.fnmatchcase(n, glob)]
        out.append(SourceModels("torchvision", True, names, "the default without a prefix"))
    if wanted("timm"):
        if importlib.util.find_spec("timm") is None:
            out.append(SourceModels("timm", False, [], f"not installed: {_INSTALL}"))
        else:
            import timm

            names = [f"timm:{n}" for n in timm.list_models(glob)]
            out.append(SourceModels("timm", True, names, "pretrained tags: timm:NAME.TAG"))
    if wanted("hf"):
        found = importlib.util.find_spec("transformers") is not None
        note = (
            "hf:HUB_ID[@REVISION] or hf:DIR (a save_pretrained folder); ViT, DINOv2, CLIP "
            "vision towers and other transformers vision models"
        )
        out.append(SourceModels("hf", found, [], note if found else f"not installed: {_INSTALL}"))
    if wanted("module"):
        out.append(
            SourceModels(
                "module",
                True,
                [],
                "module:PKG.MOD:CALLABLE, a function returning a torch nn.Module "
                "(with --preprocessing)",
            )
        )
    return out


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
    from semwh.extract.models import load_model, resolve_layers

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
