"""The model-source registry: every source meets one contract; outside packages add sources.

Contract (parametrised over the registry, so a new source needs a case here): its references
resolve to it, it builds a small network whose default probe layers are listed in depth
(forward) order, its preprocessing is recorded, and its libraries' versions join the
extraction's provenance. Outside sources are real packages found by importlib.metadata: a
dist-info folder with an entry point on sys.path, nothing installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from semwh.errors import ConfigError
from semwh.extract.batches import ProbedModel, probe_shapes
from semwh.extract.catalog import list_models
from semwh.extract.hooks import Pooling
from semwh.extract.networks import build_model, model_spec, resolve_layers
from semwh.extract.rows import extraction_versions, run_params
from semwh.extract.sources import BUILTIN, resolve
from semwh.extract.spec import ModelSource
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

TINY_OPENCLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def _hf_folder(root: Path) -> str:
    transformers = pytest.importorskip("transformers")
    folder = root / "hf-vit"
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    transformers.ViTModel(config).save_pretrained(folder)
    processor = (
        getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    )
    processor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return f"hf:{folder}"


def _openclip_tiny(root: Path) -> str:
    open_clip = pytest.importorskip("open_clip")
    path = root / "semwh-tiny-ViT.json"
    path.write_text(json.dumps(TINY_OPENCLIP))
    open_clip.add_model_config(path)  # open_clip's own way to add a model config
    return "openclip:semwh-tiny-ViT"


# Each source's small case: (reference builder, extra arguments of model_spec).
CASES: dict[str, tuple[Callable[[Path], str], dict[str, str]]] = {
    "torchvision": (lambda _: "torchvision:resnet18", {"weights": "none"}),
    "efficientnet_lite0": (lambda _: "efficientnet_lite0", {"weights": "none"}),
    "timm": (lambda _: "timm:test_vit", {"weights": "none"}),
    "hf": (_hf_folder, {}),
    "openclip": (_openclip_tiny, {"weights": "none"}),
    "module": (
        lambda _: "module:tests.integration.vision_modules:tiny_net",
        {"preprocessing": "imagenet,resize=40,crop=32", "layouts": "tokens=tokens,mix=tokens"},
    ),
}


def test_every_registered_source_has_a_contract_case() -> None:
    assert sorted(CASES) == sorted(source.name for source in BUILTIN)


@pytest.mark.parametrize("source", BUILTIN, ids=lambda s: s.name)
def test_source_contract(source: ModelSource, tmp_path: Path) -> None:
    if not source.available():
        pytest.skip(f"{source.name}: {source.install}")
    make, kwargs = CASES[source.name]
    reference = make(tmp_path)
    assert resolve(reference)[0] is source
    spec = model_spec(reference, **kwargs)
    assert spec.source == source.name
    loaded = build_model(spec)
    layers = resolve_layers(loaded, None)
    assert layers and set(layers) <= set(loaded.all_layers)
    probed = ProbedModel(
        loaded.module, layers, Pooling(), loaded.preprocessing, torch.device("cpu")
    )
    try:
        order, shapes = probe_shapes(probed, loaded.layouts)
    finally:
        probed.close()
    assert order == layers  # the default probes are listed in depth order
    assert all(shapes[layer] for layer in layers)
    recorded = run_params(loaded.identity, order, Pooling(), "fp32", 2, "sha", 1)["preprocessing"]
    assert recorded == loaded.preprocessing.to_dict()
    assert {"resize", "crop", "mean", "std", "interpolation"} <= set(recorded)
    versions = extraction_versions()
    assert all(versions[lib] == v for lib, v in source.versions().items())
    assert set(source.libraries) <= set(versions)  # its libraries were used: all recorded
    offered = source.models("*")
    assert offered is None or reference in offered or reference.split(":", 1)[-1] in offered


ZOO = '''
"""An outside package's model source."""

import torch
from torch import nn

from semwh.extract.spec import ModelSource, ModelSpec, default_name, on_meta, seeded
from semwh.extract.preprocess import Preprocessing

__version__ = "4.2"


def net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )


class ZooSource(ModelSource):
    name = "zoo"
    libraries = ("semwh_zoo_source",)
    note = "zoo:tiny"

    def available(self):
        return True

    def models(self, glob):
        return ["zoo:tiny"]

    def spec(self, ref, request):
        return ModelSpec(
            name=request.name or default_name(f"zoo-{ref}", request.mode, None),
            architecture=f"zoo:{ref}",
            weights=request.mode,
            seed=request.seed,
            preprocessing=Preprocessing(resize=20, crop=16),
            weights_paths=(),
            build=lambda: seeded(net, request.seed),
            skeleton=on_meta(net),
            probes=lambda m: (["0", "2", "4"], ["0", "1", "2", "3", "4"], "4"),
            layout_rule=lambda m, p: (lambda layer, shape: None),
            source="zoo",
        )
'''


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path holding two distributions' metadata: a working source (zoo) and
    one whose module fails to import (broken)."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "semwh_zoo_source.py").write_text(ZOO)
    (root / "semwh_broken_source.py").write_text("raise RuntimeError('zoo keeper missing')\n")
    for dist, entry in (
        ("semwh_zoo", "zoo = semwh_zoo_source:ZooSource"),
        ("semwh_broken", "broken = semwh_broken_source:Source"),
    ):
        info = root / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[semwh.sources]\n{entry}\n")
    monkeypatch.syspath_prepend(str(root))
    return root


def test_an_outside_source_builds_lists_and_records_its_version(plugins: Path) -> None:
    loaded = build_model(model_spec("zoo:tiny", weights="none"))
    assert (loaded.name, loaded.source) == ("zoo-tiny-random", "zoo")
    assert resolve_layers(loaded, None) == ["0", "2", "4"]
    assert extraction_versions()["semwh_zoo_source"] == "4.2"
    assert [(e.source, e.models) for e in list_models("zoo:*")] == [("zoo", ["zoo:tiny"])]
    # A broken plugin is listed with the reason and named when its prefix is used.
    broken = next(e for e in list_models("*") if e.source == "broken")
    assert broken.broken and not broken.available and "zoo keeper missing" in broken.note
    with pytest.raises(ConfigError, match=r"plugin 'broken' .*semwh_broken 1\.0.* RuntimeError"):
        model_spec("broken:anything")
    (plugins / "semwh_broken_source.py").write_text(
        "from semwh.extract.spec import ModelSource\n\n"
        "class Source(ModelSource):\n    name = 'other'\n"
    )
    with pytest.raises(ConfigError, match=r"plugin 'broken' .* names its source 'other'"):
        model_spec("broken:anything")


def test_a_broken_plugin_is_named_without_a_traceback(plugins: Path) -> None:
    proc = run_cli("models", "broken:x", env={"PYTHONPATH": str(plugins)}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "model source plugin 'broken'" in proc.stderr and "zoo keeper missing" in proc.stderr


def test_a_plugin_taking_a_built_in_prefix_is_listed_as_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "semwh_fake_timm-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: semwh_fake_timm\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[semwh.sources]\ntimm = nowhere:Source\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ignored = [e for e in list_models("*") if e.broken and e.source == "timm"]
    assert len(ignored) == 1 and "takes the built-in prefix 'timm'" in ignored[0].note
    # The built-in source keeps its prefix.
    assert any(e.source == "timm" and not e.broken for e in list_models("*"))
