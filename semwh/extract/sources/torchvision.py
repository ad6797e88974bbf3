"""``[torchvision:]NAME``: every torchvision classification model, the default source.

Weights: ``default`` (the architecture's ``DEFAULT`` weights enum, downloaded into the torch
cache), a weights enum member name (``IMAGENET1K_V1``), ``none`` (seeded random
initialisation: a distinct model named ``ARCH-random``), or a local file (``--weights-file``)
for offline clusters. Preprocessing is the weights' own transform.

Default probes: vgg16, resnet50 and inception_v3 carry those of the design (the block outputs
the paper probed), ViTs their encoder layers and Swin transformers their blocks; any other
model the children of its top-level containers. Layer names are module paths (``layer3.5``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import NotFoundError
from semwh.extract.layouts import CHANNELS_FIRST, CHANNELS_LAST, Layout, LayoutRule, infer_layout
from semwh.extract.preprocess import Preprocessing
from semwh.extract.spec import (
    ModelSource,
    ModelSpec,
    SpecRequest,
    default_name,
    generic_blocks,
    load_into,
    load_state_dict_file,
    on_meta,
    seeded,
    with_preprocessing,
)


class TorchvisionSource(ModelSource):
    """torchvision's classification models (references without a prefix land here)."""

    name = "torchvision"
    note = "the default without a prefix"

    def available(self) -> bool:
        return True

    def models(self, glob: str) -> list[str]:
        import torchvision.models as tvm

        return sorted(n for n in tvm.list_models(module=tvm) if fnmatch.fnmatchcase(n, glob))

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        spec = torchvision_spec(ref, request.mode, request.weights_file, request.seed, request.name)
        prep = with_preprocessing(spec.preprocessing, request.preprocessing, ref)
        return replace(spec, preprocessing=prep)

    def versions(self) -> dict[str, str]:
        import torchvision

        return {"torchvision": torchvision.__version__}


def torchvision_layers(arch: str, model: Any) -> tuple[list[str], list[str], str]:
    """(default, all, logits) module paths of a torchvision architecture."""
    if arch == "vgg16":
        pools = [
            f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)
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
    if arch.startswith("vit_"):
        return _vit_layers(model)
    if arch.startswith("swin_"):
        return _swin_layers(model)
    blocks = generic_blocks(model)
    logits = blocks[-1]
    return blocks, blocks, logits


def _vit_layers(model: Any) -> tuple[list[str], list[str], str]:
    """Patch embedding, every encoder layer, the final norm, pre-logits (if any), logits."""
    encoder = [f"encoder.layers.{name}" for name, _ in model.encoder.layers.named_children()]
    heads = [f"heads.{name}" for name, _ in model.heads.named_children()]
    default = ["conv_proj", *encoder, "encoder.ln", *[h for h in heads if h != "heads.pre_logits"]]
    return default, ["conv_proj", *encoder, "encoder.ln", *heads], "heads.head"


def _swin_layers(model: Any) -> tuple[list[str], list[str], str]:
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


def torchvision_layout_rule(arch: str, model: nn.Module, crop: int) -> LayoutRule:
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


def _torchvision_kwargs(arch: str) -> dict[str, Any]:
    # The builders set these when given a weights enum; a local file needs the same network.
    if arch in ("inception_v3", "googlenet"):
        return {"transform_input": True, "aux_logits": True, "init_weights": False}
    return {}


def _init_kwargs(arch: str) -> dict[str, Any]:
    # Inception and GoogLeNet warn unless told to initialise; say so explicitly.
    if arch in ("inception_v3", "googlenet"):
        return {"init_weights": True}
    return {}


def torchvision_spec(
    arch: str, mode: str, weights_file: str | Path | None, seed: int, name: str | None
) -> ModelSpec:
    """The spec of a torchvision classification model (its weights' own preprocessing).

    Raises:
        NotFoundError: Unknown architecture or weights member.
    """
    import torchvision.models as tvm

    if arch not in tvm.list_models(module=tvm):
        raise NotFoundError(
            f"unknown model {arch!r}: choose a torchvision classification model "
            "(e.g. resnet50, vgg16, inception_v3) or efficientnet_lite0, or another source "
            "(timm:NAME, hf:ID_OR_DIR, openclip:MODEL[@PRETRAINED], module:PKG.MOD:CALLABLE; "
            "`semwh models` lists them)"
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
        probes=lambda module: torchvision_layers(arch, module),
        layout_rule=lambda module, prep: torchvision_layout_rule(arch, module, prep.crop),
        source="torchvision",
    )
