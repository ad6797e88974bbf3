"""What every model source builds on: the spec of a model, the source interface, shared helpers.

A model source (:mod:`semwh.extract.sources`) turns a reference (``timm:NAME``,
``openclip:MODEL@TAG``, ...) into a :class:`ModelSpec`: the registry name, the weights identity,
the preprocessing, builders of the network and its default probe layers (block outputs in depth
order). Each source is one :class:`ModelSource` subclass in one file; this module imports no
source, so the sources depend on it and the registry and :mod:`semwh.extract.networks` depend on
the sources, in that one direction.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import ConfigError, InputError, MissingDependencyError
from semwh.extract.digests import WeightsDigests
from semwh.extract.layouts import LayoutOverrides, LayoutRule
from semwh.extract.preprocess import Preprocessing

DEFAULT_SEED = 0

#: Attribute a source's build sets on the network it returns: the checkpoint's missing weights
#: (state-dict keys) that were left at their initial values (see :func:`check_missing_weights`).
MISSING_WEIGHTS = "semwh_missing_weights"

# Modules that never carry a representation worth probing.
_SKIP_TYPES = (nn.Dropout, nn.Dropout2d, nn.Identity)


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies a model in the registry and in a run's parameters.

    Attributes: as :class:`semwh.extract.networks.LoadedModel`'s of the same names.
    """

    name: str
    architecture: str
    weights: str
    weights_sha256: str
    seed: int | None
    preprocessing: Preprocessing
    missing_weights: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecRequest:
    """What the user asked of a model source, beside the reference.

    Attributes:
        mode: ``default`` (the source's trained weights), ``file`` (``weights_file``),
            ``none`` (seeded random initialisation) or a source's own weights name
            (a torchvision enum member).
        weights_file: The local weights file of mode ``file``.
        seed: Seed of random weights.
        name: Registry name (default from the reference).
        preprocessing: Replaces or adjusts the source's preprocessing.
    """

    mode: str = "default"
    weights_file: str | Path | None = None
    seed: int = DEFAULT_SEED
    name: str | None = None
    preprocessing: str | dict[str, Any] | Preprocessing | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A model before it is built: its name, weights choice, preprocessing and builders.

    Attributes:
        name: Registry name.
        architecture: Architecture name.
        weights: The weights label (as :attr:`semwh.extract.networks.LoadedModel.weights`).
        seed: Seed of the random initialisation (None for trained weights).
        preprocessing: How images are turned into the model's input.
        weights_paths: The files whose SHA-256 identifies the weights when they all exist
            (a local file, the package's file, a cached download, a Hugging Face folder's
            shards); otherwise, and for random weights (empty), the hash of the built
            module's state dict does.
        build: Builds the network with its weights (CPU).
        skeleton: Builds the same modules on the meta device: no weights, no memory.
        probes: (default layers, all layers, logits layer or None) of a built network.
        layout_rule: Given a built network, the source's layout rule for its outputs.
        layout_overrides: Layouts the user declared (``--layout``).
        source: The name of the model source (``torchvision``, ``timm``, ...).
    """

    name: str
    architecture: str
    weights: str
    seed: int | None
    preprocessing: Preprocessing
    weights_paths: tuple[Path, ...]
    build: Callable[[], nn.Module]
    skeleton: Callable[[], nn.Module]
    probes: Callable[[nn.Module], tuple[list[str], list[str], str | None]]
    layout_rule: Callable[[nn.Module, Preprocessing], LayoutRule]
    layout_overrides: LayoutOverrides = LayoutOverrides()
    source: str = "torchvision"
    find_weights: Callable[[], tuple[Path, ...]] | None = None

    def weights_files(self) -> tuple[Path, ...]:
        """The weights files as they are now (a download may have added them since)."""
        return self.find_weights() if self.find_weights is not None else self.weights_paths

    @property
    def weights_path(self) -> Path | None:
        """The one weights file (None when there is none or there are several)."""
        files = self.weights_files()
        return files[0] if len(files) == 1 else None

    def weights_sha256(self, digests: WeightsDigests | None = None) -> str:
        """SHA-256 of the weights file, or of the shards' digests in order.

        Raises:
            OSError: A file cannot be read.
        """
        digests = digests or WeightsDigests(None)
        files = self.weights_files()
        if len(files) == 1:
            return digests.sha256(files[0])
        lines = "".join(f"{p.name}:{digests.sha256(p)}\n" for p in files)
        return hashlib.sha256(lines.encode()).hexdigest()

    def has_weights_files(self) -> bool:
        files = self.weights_files()
        return bool(files) and all(p.exists() for p in files)

    def identity(self, weights_sha256: str) -> ModelIdentity:
        return ModelIdentity(
            name=self.name,
            architecture=self.architecture,
            weights=self.weights,
            weights_sha256=weights_sha256,
            seed=self.seed,
            preprocessing=self.preprocessing,
        )


@dataclass(frozen=True)
class SourceModels:
    """What one source offers, as ``semwh models`` lists it.

    Attributes:
        source: The source's name (``torchvision``, ``timm``, ``openclip``, ...).
        available: Whether its package is installed.
        models: Model references matching the pattern (empty where a source cannot list
            its models: ``hf``, ``module``).
        note: How its models are named, or what to install (or why an outside source
            cannot be loaded).
        broken: An outside source whose plugin cannot be loaded.
    """

    source: str
    available: bool
    models: list[str] = field(default_factory=list)
    note: str = ""
    broken: bool = False


class ModelSource:
    """One model source: a reference prefix, its package, what it offers, how it builds a spec.

    A source is one subclass in one file of :mod:`semwh.extract.sources` (or of an outside
    package, registered under the entry-point group ``semwh.sources``). The registry asks it
    only what this interface declares.

    Attributes:
        name: The reference prefix (``timm`` for ``timm:NAME``) and the source's name in
            listings; an outside source's entry point carries the same name.
        prefixed: Whether references name the source by its prefix; a source without one
            (EfficientNet-Lite0) claims plain references through :meth:`claims`.
        requires: Import names of the packages the source needs.
        install: What to run when they are missing.
        libraries: Modules whose versions an extraction records once this process imported
            them.
        note: How its models are named (shown by ``semwh models``).
    """

    name: str = ""
    prefixed: bool = True
    requires: tuple[str, ...] = ()
    install: str = "pip install 'semwh[vision]'"
    libraries: tuple[str, ...] = ()
    note: str = ""

    def available(self) -> bool:
        """Whether the packages the source needs are installed (nothing is imported)."""
        for package in self.requires:
            try:
                if importlib.util.find_spec(package) is None:
                    return False
            except (ImportError, ValueError):  # a broken install, or one masked in sys.modules
                return False
        return True

    def claims(self, reference: str) -> bool:
        """Whether a reference without prefix (or with the default source's) is this source's."""
        return False

    def models(self, glob: str) -> list[str] | None:
        """The references of the source's models that match ``glob``; None when the source
        cannot list them (a folder, a hub ID, a user's function)."""
        return None

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        """The spec of ``ref`` (the reference without its prefix).

        Raises:
            NotFoundError: Unknown model or weights.
            MissingDependencyError: The source's package is not installed.
            ConfigError: Weights or preprocessing the source cannot give.
        """
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        """Versions of the source's libraries that this process has imported."""
        out: dict[str, str] = {}
        for library in self.libraries:
            module = sys.modules.get(library)
            version = getattr(module, "__version__", None)
            if version is not None:
                out[library] = str(version)
        return out


def import_library(name: str, missing: str) -> Any:
    """Import a source's optional library.

    Raises:
        MissingDependencyError: It is not installed (``missing`` says what to install).
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(missing) from exc


def check_mode(reference: str, mode: str, allowed: tuple[str, ...]) -> None:
    """Refuse a weights choice the source does not have."""
    if mode not in allowed:
        choices = ", ".join(m for m in allowed if m != "file")
        more = " or --weights-file" if "file" in allowed else ""
        raise ConfigError(f"unknown weights {mode!r} for {reference} (choose {choices}{more})")


def with_preprocessing(
    base: Preprocessing | None,
    given: str | dict[str, Any] | Preprocessing | None,
    reference: str,
) -> Preprocessing:
    """The source's preprocessing changed by the user's, or the user's alone.

    Raises:
        ConfigError: Neither is known.
    """
    from semwh.extract.preprocess import parse_preprocessing

    if isinstance(given, Preprocessing):
        return given
    result = parse_preprocessing(given, base)
    if result is None:
        raise ConfigError(
            f"{reference} carries no preprocessing: pass --preprocessing (a preset such as "
            "imagenet or clip, or resize=256,crop=224,interpolation=bilinear,"
            "mean=0.485/0.456/0.406,std=0.229/0.224/0.225), or `preprocessing` in the run file"
        )
    return result


def generic_blocks(model: nn.Module) -> list[str]:
    """Generic block list: children of top-level containers, other top-level children as is."""
    names: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, _SKIP_TYPES) or name.lower().startswith("aux"):
            continue
        if isinstance(child, nn.Sequential | nn.ModuleList):
            for sub, grandchild in child.named_children():
                if not isinstance(grandchild, _SKIP_TYPES):
                    names.append(f"{name}.{sub}")
        else:
            names.append(name)
    return names


def on_meta(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def skeleton() -> nn.Module:
        with torch.device("meta"):
            return build()

    return skeleton


def seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    # Initialisers draw from the global generator; fork it so the caller's state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def default_name(arch: str, weights: str, default_member: str | None) -> str:
    if weights == "none":
        return f"{arch}-random"
    if weights in ("default", "file") or weights == default_member:
        return arch
    return f"{arch}-{weights.lower()}"


def state_dict_sha256(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and bytes, in order)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise InputError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise InputError(f"weights file {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise InputError(
            f"weights {source} do not fit the architecture: {str(exc).splitlines()[-1].strip()}"
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"weights {source} do not fit the architecture: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def missing_module(key: str, modules: dict[str, nn.Module]) -> str:
    """The module path that holds a state-dict key (``pooler.dense.weight`` -> ``pooler.dense``)."""
    path = key
    while path and path not in modules:
        path = path.rpartition(".")[0]
    return path


def holds_missing(layer: str, missing: tuple[str, ...], modules: dict[str, nn.Module]) -> bool:
    """Whether a missing weight lies in ``layer`` or one of its submodules."""
    for key in missing:
        owner = missing_module(key, modules)
        if owner == layer or owner.startswith(f"{layer}."):
            return True
    return False


def check_missing_weights(
    name: str, module: nn.Module, missing: tuple[str, ...], layers: list[str]
) -> None:
    """Refuse probe layers that a checkpoint's missing weights reach.

    A weight the checkpoint lacks is allowed only in a module registered after every probed
    layer and outside them (a head no probe reads, such as a ViT pooler): a missing weight
    inside a probed layer, or in a module before one, would change what it outputs.

    Raises:
        InputError: Naming the missing weight and the probed layer it reaches.
    """
    if not missing:
        return
    modules = dict(module.named_modules())
    order = {path: i for i, path in enumerate(modules)}
    for key in missing:
        owner = missing_module(key, modules)
        for layer in layers:
            inside = owner == layer or owner.startswith(f"{layer}.")
            if inside or order.get(owner, -1) < order.get(layer, -1):
                where = "inside" if inside else "before"
                raise InputError(
                    f"model {name}: the checkpoint lacks weight {key}, {where} probed layer "
                    f"{layer}: use a checkpoint that has it, or probe only layers before "
                    f"{owner or 'it'} (missing: {', '.join(missing[:5])})"
                )


__all__ = [
    "DEFAULT_SEED",
    "MISSING_WEIGHTS",
    "ModelIdentity",
    "ModelSource",
    "ModelSpec",
    "SourceModels",
    "SpecRequest",
    "check_missing_weights",
    "check_mode",
    "default_name",
    "generic_blocks",
    "holds_missing",
    "load_into",
    "load_state_dict_file",
    "on_meta",
    "seeded",
    "state_dict_sha256",
    "with_preprocessing",
]
