"""Models by reference: the spec of a reference, the built model, and its probe layers.

A model is named by its source (:mod:`semwh.extract.sources`, the registry):
``torchvision:NAME`` (the default without a prefix), ``efficientnet_lite0``, ``timm:NAME``,
``hf:ID_OR_DIR``, ``openclip:MODEL[@PRETRAINED]``, ``module:PKG.MOD:CALLABLE`` or an outside
package's prefix. :func:`model_spec` asks the reference's source for its
:class:`~semwh.extract.spec.ModelSpec`, :func:`build_model` builds it into a
:class:`LoadedModel`, and :func:`resolve_layers` picks its probe layers. Layer names are module
paths (``layer3.5``), so a layer space is ``MODEL/LAYER`` (``resnet50/layer3.5``).

Weights: ``default`` (the source's trained weights), a source's own weights name (a
torchvision enum member such as ``IMAGENET1K_V1``), ``none`` (seeded random initialisation: a
distinct model named ``ARCH-random``), or a local file (``weights_file``) for offline clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from semwh.errors import ConfigError
from semwh.extract.digests import WeightsDigests
from semwh.extract.layouts import Layout, LayoutOverrides, LayoutRule, resolve_layouts
from semwh.extract.preprocess import Preprocessing
from semwh.extract.sources import resolve
from semwh.extract.spec import (
    DEFAULT_SEED,
    MISSING_WEIGHTS,
    ModelIdentity,
    ModelSpec,
    SpecRequest,
    check_missing_weights,
    holds_missing,
    state_dict_sha256,
)


@dataclass
class LoadedModel:
    """A built model with its identity, ready to probe.

    Attributes:
        name: Registry name (``resnet50``, ``resnet50-random``, ...).
        architecture: Architecture name (``resnet50``).
        module: The network, in eval mode on the CPU.
        weights: ``TorchvisionEnum.MEMBER``, ``file:PATH``, ``package:...`` or ``none``.
        weights_sha256: Hash of the weights file, or of the state dict for random weights.
        seed: Seed of the random initialisation (None for trained weights).
        preprocessing: How images are turned into the model's input.
        default_layers: Default probe layers (module paths, forward order).
        all_layers: Every block (``--layers all``), forward order.
        logits_layer: The module whose output is the logits (None: the model has no
            classifier, so no predictions are stored).
        source: The model source's name (``torchvision``, ``timm``, ``openclip``, ...).
        layout_rule: The source's layout of a module output (None where it cannot tell).
        layout_overrides: Layouts the user declared.
        missing_weights: State-dict keys the checkpoint lacked (left initialised; outside
            every default probe layer, and refused in a requested one).
    """

    name: str
    architecture: str
    module: nn.Module
    weights: str
    weights_sha256: str
    seed: int | None
    preprocessing: Preprocessing
    default_layers: list[str]
    all_layers: list[str]
    logits_layer: str | None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "torchvision"
    layout_rule: LayoutRule | None = None
    layout_overrides: LayoutOverrides = field(default_factory=LayoutOverrides)
    missing_weights: tuple[str, ...] = ()

    def layouts(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, Layout]:
        """The checked layout of each probed output (shapes of a probe forward, batch first).

        Raises:
            ConfigError: An ambiguous layout or a declared one the shapes contradict.
        """
        rule = self.layout_rule or (lambda _layer, _shape: None)
        return resolve_layouts(self.name, shapes, rule, self.layout_overrides)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            name=self.name,
            architecture=self.architecture,
            weights=self.weights,
            weights_sha256=self.weights_sha256,
            seed=self.seed,
            preprocessing=self.preprocessing,
            missing_weights=self.missing_weights,
        )


def available_models() -> list[str]:
    """Every model name ``semwh extract`` accepts without a prefix."""
    from semwh.extract.sources import BUILTIN

    names: list[str] = []
    for source in BUILTIN:
        if source is BUILTIN[0] or not source.prefixed:
            names += source.models("*") or []
    return sorted(names)


def model_spec(
    architecture: str,
    *,
    weights: str = "default",
    weights_file: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    name: str | None = None,
    preprocessing: str | dict[str, Any] | Preprocessing | None = None,
    layouts: str | dict[str, str] | LayoutOverrides | None = None,
) -> ModelSpec:
    """A model's identity and builders, without building it (arguments as :func:`load_model`).

    Raises:
        NotFoundError: Unknown architecture or weights member.
        ConfigError: Both ``weights`` and ``weights_file``; a bad preprocessing or layout.
        MissingDependencyError: The source's optional package is not installed.
    """
    from semwh.extract.layouts import parse_overrides

    if weights_file is not None and weights not in ("default", "file"):
        raise ConfigError("pass either --weights or --weights-file, not both")
    mode = "file" if weights_file is not None else weights
    overrides = layouts if isinstance(layouts, LayoutOverrides) else parse_overrides(layouts)
    source, ref = resolve(architecture)
    request = SpecRequest(mode, weights_file, seed, name, preprocessing)
    return replace(source.spec(ref, request), layout_overrides=overrides)


def load_model(
    architecture: str,
    *,
    weights: str = "default",
    weights_file: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    name: str | None = None,
    digests: WeightsDigests | None = None,
    preprocessing: str | dict[str, Any] | Preprocessing | None = None,
    layouts: str | dict[str, str] | LayoutOverrides | None = None,
) -> LoadedModel:
    """Build a model with its weights and preprocessing.

    Args:
        architecture: ``[torchvision:]NAME`` (a torchvision classification model or
            ``efficientnet_lite0``), ``timm:NAME``, ``hf:ID_OR_DIR``,
            ``openclip:MODEL[@PRETRAINED]``, ``module:PKG.MOD:CALLABLE`` or an outside
            source's ``PREFIX:REF`` (:mod:`semwh.extract.sources`).
        weights: ``default`` (the source's trained weights), a torchvision weights member
            (``IMAGENET1K_V1``) or ``none`` (seeded random initialisation).
        weights_file: A local weights file to load instead of downloading (offline clusters).
        seed: Seed for ``weights='none'``.
        name: Registry name; default ``ARCH`` for trained weights, ``ARCH-random`` for none.
        digests: Where weights-file hashes are remembered (default: hash the file).
        preprocessing: Replaces or adjusts the source's preprocessing (see
            :func:`semwh.extract.preprocess.parse_preprocessing`); required for ``module:``.
        layouts: Declared output layouts (see :func:`semwh.extract.layouts.parse_overrides`).

    Raises:
        NotFoundError: Unknown architecture or weights member.
        InputError: The weights file does not fit the architecture.
        MissingDependencyError: The source's optional package is not installed.
    """
    spec = model_spec(
        architecture,
        weights=weights,
        weights_file=weights_file,
        seed=seed,
        name=name,
        preprocessing=preprocessing,
        layouts=layouts,
    )
    return build_model(spec, digests)


def build_model(spec: ModelSpec, digests: WeightsDigests | None = None) -> LoadedModel:
    """Build the network of a spec and identify its weights.

    Layers holding weights the checkpoint lacked leave the default probes (and a classifier
    among them stops giving logits).
    """
    module = spec.build().eval()
    if spec.has_weights_files():
        digest = spec.weights_sha256(digests)
    else:
        digest = state_dict_sha256(module)
    default, all_layers, logits = spec.probes(module)
    missing = tuple(getattr(module, MISSING_WEIGHTS, ()))
    if missing:
        modules = dict(module.named_modules())
        default = [layer for layer in default if not holds_missing(layer, missing, modules)]
        if logits is not None and holds_missing(logits, missing, modules):
            logits = None
    return LoadedModel(
        name=spec.name,
        architecture=spec.architecture,
        module=module,
        weights=spec.weights,
        weights_sha256=digest,
        seed=spec.seed,
        preprocessing=spec.preprocessing,
        default_layers=default,
        all_layers=all_layers,
        logits_layer=logits,
        source=spec.source,
        layout_rule=spec.layout_rule(module, spec.preprocessing),
        layout_overrides=spec.layout_overrides,
        missing_weights=missing,
    )


def resolve_layers(model: LoadedModel, layers: str | list[str] | None) -> list[str]:
    """The probe layers: default, ``all``, or a comma-separated list of module paths.

    Raises:
        ConfigError: A name is not a module of the model.
        InputError: A weight the checkpoint lacks is inside or before a probe layer.
    """
    picked = _pick_layers(model.name, model.module, model.default_layers, model.all_layers, layers)
    check_missing_weights(model.name, model.module, model.missing_weights, picked)
    return picked


def requested_layers(spec: ModelSpec, layers: str | list[str] | None) -> list[str]:
    """The probe layers :func:`resolve_layers` would pick, from the model's structure alone.

    The modules come from :attr:`ModelSpec.skeleton` (no weights are read), in the order of
    the request or of the default list, which need not be the forward order.

    Raises:
        ConfigError: A name is not a module of the model.
    """
    skeleton = spec.skeleton()
    default, all_layers, _ = spec.probes(skeleton)
    return _pick_layers(spec.name, skeleton, default, all_layers, layers)


def _pick_layers(
    name: str,
    module: nn.Module,
    default_layers: list[str],
    all_layers: list[str],
    layers: str | list[str] | None,
) -> list[str]:
    if layers is None or layers == "default" or layers == []:
        return list(default_layers)
    if layers == "all" or layers == ["all"]:
        return list(all_layers)
    names = [s.strip() for s in layers.split(",")] if isinstance(layers, str) else list(layers)
    names = [n for n in names if n]
    modules = dict(module.named_modules())
    for n in names:
        if n not in modules or n == "":
            close = [m for m in modules if m and (n in m or m in n)][:6]
            hint = f" (similar: {', '.join(close)})" if close else ""
            raise ConfigError(
                f"model {name} has no module {n!r}{hint}; `--layers all` probes every "
                f"block, e.g. {', '.join(all_layers[:4])}, ..."
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--layers lists a module twice: {','.join(names)}")
    return names


__all__ = [
    "DEFAULT_SEED",
    "LoadedModel",
    "ModelIdentity",
    "ModelSpec",
    "available_models",
    "build_model",
    "load_model",
    "model_spec",
    "requested_layers",
    "resolve_layers",
]
