"""Model specs: default probe layers, output shapes, weights identity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
import torchvision

from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.extract.batches import ProbedModel, probe_shapes
from semwh.extract.digests import WeightsDigests
from semwh.extract.hooks import Pooling
from semwh.extract.networks import (
    LoadedModel,
    load_model,
    model_spec,
    requested_layers,
    resolve_layers,
)

# (model, number of default layers, first layer and its shape, last two layers' shapes)
EXPECTED = {
    "vgg16": (8, ("features.4", (64, 112, 112)), [(4096,), (1000,)]),
    "resnet50": (19, ("maxpool", (64, 56, 56)), [(2048, 1, 1), (1000,)]),
    "inception_v3": (14, ("maxpool2", (192, 35, 35)), [(2048, 1, 1), (1000,)]),
    "efficientnet_lite0": (19, ("stem", (32, 112, 112)), [(1280, 7, 7), (1000,)]),
}


@pytest.fixture(scope="module")
def random_models() -> dict[str, LoadedModel]:
    """The four design models with random weights, built once (vgg16 takes seconds)."""
    return {arch: load_model(arch, weights="none") for arch in EXPECTED}


@pytest.mark.integration
@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_default_layers_and_shapes(arch: str, random_models: dict[str, LoadedModel]) -> None:
    loaded = random_models[arch]
    assert loaded.name == f"{arch}-random"
    count, (first, first_shape), last_shapes = EXPECTED[arch]
    layers = resolve_layers(loaded, None)
    assert len(layers) == count
    probed = ProbedModel(
        loaded.module, layers, Pooling(), loaded.preprocessing, torch.device("cpu")
    )
    try:
        order, shapes = probe_shapes(probed)
    finally:
        probed.close()
    assert order == layers  # defaults are listed in forward order
    assert order[0] == first and shapes[first] == first_shape
    assert [shapes[layer] for layer in order[-2:]] == last_shapes
    assert order[-1] == loaded.logits_layer
    assert set(layers) <= set(loaded.all_layers)


def test_vgg16_and_resnet50_layer_names(random_models: dict[str, LoadedModel]) -> None:
    vgg = random_models["vgg16"]
    assert vgg.default_layers == [
        "features.4",
        "features.9",
        "features.16",
        "features.23",
        "features.30",
        "classifier.1",  # fc6 after ReLU
        "classifier.4",  # fc7 after ReLU
        "classifier.6",
    ]
    modules = dict(vgg.module.named_modules())
    assert isinstance(modules["classifier.1"], torch.nn.ReLU)
    assert isinstance(modules["classifier.4"], torch.nn.ReLU)
    res = random_models["resnet50"]
    blocks = [n for n in res.default_layers if n.startswith("layer")]
    assert len(blocks) == 16 and blocks[0] == "layer1.0" and blocks[-1] == "layer4.2"
    inc = random_models["inception_v3"]
    mixed = [n for n in inc.default_layers if n.startswith("Mixed_")]
    assert mixed[0] == "Mixed_5b" and mixed[-1] == "Mixed_7c" and len(mixed) == 11
    assert "AuxLogits" not in inc.all_layers


def test_random_weights_are_seeded_and_hashed() -> None:
    a = load_model("resnet18", weights="none", seed=1)
    b = load_model("resnet18", weights="none", seed=1)
    c = load_model("resnet18", weights="none", seed=2)
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256
    assert a.seed == 1 and a.weights == "none" and a.name == "resnet18-random"
    # The caller's global generator is left alone.
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    load_model("resnet18", weights="none", seed=1)
    assert torch.equal(torch.rand(1), expected)


def test_weights_file_roundtrip(tmp_path: Path) -> None:
    src = load_model("resnet18", weights="none", seed=4)
    path = tmp_path / "resnet18.pth"
    torch.save(src.module.state_dict(), path)
    loaded = load_model("resnet18", weights_file=path)
    assert loaded.name == "resnet18" and loaded.weights == f"file:{path}"
    for key, value in src.module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    assert loaded.preprocessing.crop == weights.transforms().crop_size[0]
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(InputError, match="do not fit"):
        load_model("resnet18", weights_file=bad)
    with pytest.raises(InputError, match="does not exist"):
        load_model("resnet18", weights_file=tmp_path / "missing.pth")


def test_efficientnet_lite0_bundled_weights_and_preprocessing() -> None:
    loaded = load_model("efficientnet_lite0")
    assert loaded.name == "efficientnet_lite0" and loaded.seed is None
    assert loaded.weights.startswith("package:")
    p = loaded.preprocessing
    assert (p.resize, p.crop, p.scale, p.mean, p.std) == (256, 224, 1.0, (127.0,) * 3, (128.0,) * 3)


def test_unknown_names_are_errors() -> None:
    with pytest.raises(NotFoundError, match="unknown model 'resnet51'"):
        load_model("resnet51", weights="none")
    with pytest.raises(NotFoundError, match="unknown weights 'IMAGENET9K'"):
        load_model("resnet18", weights="IMAGENET9K")
    loaded = load_model("resnet18", weights="none")
    with pytest.raises(ConfigError, match="no module 'layer9'"):
        resolve_layers(loaded, "layer1.0,layer9")
    assert resolve_layers(loaded, "layer1.0, fc") == ["layer1.0", "fc"]
    assert resolve_layers(loaded, "all") == loaded.all_layers


@pytest.mark.parametrize("request_", [None, "all", "fc, layer1.0", ["conv1", "avgpool"]])
def test_spec_picks_the_built_models_layers_without_weights(request_) -> None:
    spec = model_spec("resnet18", weights="none", seed=1)
    skeleton = spec.skeleton()
    assert {p.device.type for p in skeleton.parameters()} == {"meta"}
    loaded = load_model("resnet18", weights="none", seed=1)
    assert requested_layers(spec, request_) == resolve_layers(loaded, request_)
    assert (spec.name, spec.weights, spec.seed) == (loaded.name, loaded.weights, loaded.seed)
    assert spec.preprocessing == loaded.preprocessing
    with pytest.raises(ConfigError, match="no module 'layer9'"):
        requested_layers(spec, "layer1.0,layer9")


@pytest.mark.parametrize("arch", sorted(EXPECTED))
def test_spec_layers_of_the_design_models(arch: str, random_models) -> None:
    loaded = random_models[arch]
    spec = model_spec(arch, weights="none")
    for request_ in (None, "all"):
        assert requested_layers(spec, request_) == resolve_layers(loaded, request_)


def test_weights_file_hash_is_remembered(tmp_path: Path) -> None:
    src = load_model("resnet18", weights="none", seed=4)
    path = tmp_path / "resnet18.pth"
    torch.save(src.module.state_dict(), path)
    past = path.stat().st_mtime - 60
    os.utime(path, (past, past))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = model_spec("resnet18", weights_file=path)
    assert spec.weights_path == path and spec.identity(expected).weights == f"file:{path}"
    cache = tmp_path / "wh" / "cache" / "weights_sha256.json"
    first = WeightsDigests(cache)
    assert load_model("resnet18", weights_file=path, digests=first).weights_sha256 == expected
    assert first.hashed == 1
    second = WeightsDigests(cache)
    again = load_model("resnet18", weights_file=path, digests=second)
    assert again.weights_sha256 == expected and second.hashed == 0
    assert again.identity == spec.identity(expected)
