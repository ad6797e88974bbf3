"""Every model source through the real loading code: stored vectors equal a direct forward.

timm models are saved with safetensors and loaded back with --weights-file; Hugging Face
models are built from small configs and written with save_pretrained (model and image
processor); torchvision models use seeded random weights. The reference side is written
independently: the library's own transforms or image processor, a plain forward with hooks,
and pooling written out per layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from sqlalchemy import select

from semwh.errors import ConfigError, InputError
from semwh.extract import ExtractionOptions, finished_extraction, run_extraction
from semwh.vectors import load_image_vectors
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionRun, Image, Layer, Prediction, VisionModel
from tests.conftest import run_cli
from tests.integration.test_extract import add_sample_images, new_warehouse

pytestmark = pytest.mark.integration

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

Pool = Callable[[str, torch.Tensor], torch.Tensor]


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Warehouse:
    """Three sample photos of different aspect ratios (one shard of 2, one of 1)."""
    warehouse = new_warehouse(tmp_path_factory.mktemp("sources") / "wh")
    add_sample_images(warehouse, sorted(samples_dir.glob("*.jpg"))[5:1000:400])
    return warehouse


def _photos(wh: Warehouse) -> tuple[list[int], list[PILImage.Image]]:
    with wh.session() as s:
        rows = s.execute(select(Image.image_id, Image.path).order_by(Image.image_id)).all()
    return [i for i, _ in rows], [PILImage.open(p).convert("RGB") for _, p in rows]


def _extract(wh: Warehouse, ref: str, **kwargs) -> str:
    summary = run_extraction(
        wh,
        ExtractionOptions(ref, batch_size=2, shard_size=2, device="cpu", num_workers=0, **kwargs),
    )
    assert summary.status == "done" and summary.shards_done == 2
    return summary.model


def _stored_layers(wh: Warehouse, model: str) -> list[Layer]:
    with wh.session() as s:
        model_id = s.scalar(select(VisionModel.model_id).where(VisionModel.name == model))
        return list(
            s.scalars(select(Layer).where(Layer.model_id == model_id).order_by(Layer.depth_index))
        )


def _compare(
    wh: Warehouse,
    model: str,
    net: torch.nn.Module,
    x: torch.Tensor,
    pool: Pool,
    run: Callable[[torch.Tensor], object] | None = None,
) -> list[Layer]:
    """Stored vectors of every stored layer against ``pool`` of a hooked direct forward
    (``net(x)``, or ``run(x)``)."""
    layers = _stored_layers(wh, model)
    captured: dict[str, torch.Tensor] = {}
    modules = dict(net.named_modules())
    handles = []
    for row in layers:

        def hook(_m, _i, out, name=row.module):
            out = out[0] if isinstance(out, tuple) else out
            captured[name] = out.detach().clone()

        handles.append(modules[row.module].register_forward_hook(hook))
    with torch.no_grad():
        (run or net.eval())(x)
    for handle in handles:
        handle.remove()
    ids, _ = _photos(wh)
    for row in layers:
        ref = pool(row.module, captured[row.module]).double().numpy()
        got = load_image_vectors(wh, f"{model}/{row.module}")
        assert got.image_ids.tolist() == ids
        assert got.matrix.shape == ref.shape, row.module
        error = np.abs(got.matrix - ref).max() / max(np.abs(ref).max(), 1e-12)
        assert error < 1e-5, (row.module, error)
    return layers


def _by_rank(prefix: int, no_prefix: tuple[str, ...] = (), nhwc: tuple[str, ...] = ()) -> Pool:
    """Channels-first maps averaged over space (channels-last ones in ``nhwc``), tokens over
    the patch tokens (the first ``prefix`` left out, except in ``no_prefix``), vectors kept."""

    def pool(layer: str, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 4:
            return out.mean(dim=(1, 2) if layer in nhwc else (2, 3))
        if out.ndim == 3:
            return out[:, 0 if layer in no_prefix else prefix :].mean(dim=1)
        return out

    return pool


def _timm_case(
    wh: Warehouse, tmp_path: Path, arch: str, prefix: int, nhwc: tuple[str, ...] = ()
) -> tuple[list[Layer], torch.nn.Module]:
    from safetensors.torch import save_file
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(11)
    net = timm.create_model(arch, pretrained=False).eval()
    path = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = _extract(wh, f"timm:{arch}", weights_file=path)
    transform = create_transform(**resolve_data_config({}, model=net))
    x = torch.stack([transform(img) for img in _photos(wh)[1]])
    # The patch embedding's tokens come before the class token is added.
    layers = _compare(wh, model, net, x, _by_rank(prefix, ("patch_embed",), nhwc))
    with wh.session() as s:
        row = s.scalar(select(VisionModel).where(VisionModel.name == model))
        assert row.weights == f"file:{path}" and row.architecture.startswith(f"timm:{arch}.")
        assert s.scalar(select(Prediction.class_index).where(Prediction.model == model)) >= 0
    return layers, net


# timm's own test models: a ViT, a ResNet and a ConvNeXt at 160 px.


def test_timm_vit_depth_curve_from_a_safetensors_file(wh: Warehouse, tmp_path: Path) -> None:
    # Its patch embedding keeps the grid (B x H x W x C, for dynamic image sizes).
    layers, net = _timm_case(wh, tmp_path, "test_vit", prefix=1, nhwc=("patch_embed",))
    blocks = [f"blocks.{i}" for i in range(len(net.blocks))]
    assert len(blocks) >= 2
    assert [r.module for r in layers] == ["patch_embed", *blocks, "norm", "fc_norm", "head"]
    assert [r.layout for r in layers][:3] == ["channels_last", "tokens:1", "tokens:1"]
    assert {r.dim for r in layers[:-1]} == {net.embed_dim} and layers[-1].layout == "vector"


def test_timm_distilled_vit_leaves_out_class_and_distillation_tokens(
    wh: Warehouse, tmp_path: Path
) -> None:
    layers, _ = _timm_case(wh, tmp_path, "deit_tiny_distilled_patch16_224", prefix=2)
    # Its head reads the two tokens directly: the unused pooled-embedding norm is left out.
    assert [r.module for r in layers][-3:] == ["norm", "head", "head_dist"]
    assert [r.layout for r in layers][:2] == ["tokens", "tokens:2"]


def test_timm_resnet_and_convnext(wh: Warehouse, tmp_path: Path) -> None:
    res, net = _timm_case(wh, tmp_path, "test_resnet", prefix=0)
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(len(getattr(net, f"layer{i}")))]
    assert [r.module for r in res] == ["act1", *blocks, "global_pool", "fc"]
    conv, net = _timm_case(wh, tmp_path, "test_convnext", prefix=0)
    assert [r.module for r in conv][:2] == ["stem", "stages.0.blocks.0"]
    assert [r.module for r in conv][-2:] == ["head.pre_logits", "head.fc"]
    firsts = [r.dim for r in conv if r.module.endswith("blocks.0")]
    assert firsts == [info["num_chs"] for info in net.feature_info]


def test_torchvision_swin_stages_pool_to_their_channels(wh: Warehouse) -> None:
    import torchvision
    import torchvision.transforms as T

    stages = ["features.1", "features.3", "features.5", "features.7", "norm", "head"]
    # Swin's own preprocessing at 64 px (its windows adapt to small maps).
    model = _extract(
        wh, "swin_t", weights="none", seed=5, layers=",".join(stages),
        preprocessing="resize=73,crop=64",
    )  # fmt: skip
    torch.manual_seed(5)
    net = torchvision.models.swin_t()
    own = torchvision.models.Swin_T_Weights.DEFAULT.transforms()
    transform = T.Compose(
        [T.Resize(73, interpolation=own.interpolation), T.CenterCrop(64), T.ToTensor(),
         T.Normalize(own.mean, own.std)]
    )  # fmt: skip
    x = torch.stack([transform(img) for img in _photos(wh)[1]])

    def pool(_layer: str, out: torch.Tensor) -> torch.Tensor:
        return out.mean(dim=(1, 2)) if out.ndim == 4 else out  # B x H x W x C

    layers = _compare(wh, model, net, x, pool)
    assert [(r.dim, r.layout) for r in layers[:4]] == [
        (96, "channels_last"), (192, "channels_last"), (384, "channels_last"),
        (768, "channels_last"),
    ]  # fmt: skip
    assert json.loads(layers[0].output_shape) == [16, 16, 96]
    assert layers[-2:][0].dim == 768 and layers[-1].layout == "vector"


def test_torchvision_vit_b_16_default_layers(wh: Warehouse) -> None:
    import torchvision

    model = _extract(wh, "vit_b_16", weights="none", seed=2, token_pooling="cls")
    torch.manual_seed(2)
    net = torchvision.models.vit_b_16()
    transform = torchvision.models.ViT_B_16_Weights.DEFAULT.transforms()
    x = torch.stack([transform(img) for img in _photos(wh)[1]])

    def cls(_layer: str, out: torch.Tensor) -> torch.Tensor:
        if out.ndim == 4:
            return out.mean(dim=(2, 3))
        return out[:, 0] if out.ndim == 3 else out

    layers = _compare(wh, model, net, x, cls)
    encoder = [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    assert [r.module for r in layers] == ["conv_proj", *encoder, "encoder.ln", "heads.head"]
    assert [r.pooling for r in layers][:2] == ["avg", "tokens-cls"]


def _hf_case(
    wh: Warehouse, tmp_path: Path, model_cls, config, processor, prefix: int
) -> list[Layer]:
    torch.manual_seed(4)
    net = model_cls(config).eval()
    folder = tmp_path / type(config).__name__
    net.save_pretrained(folder)
    processor.save_pretrained(folder)
    model = _extract(wh, f"hf:{folder}")
    x = processor(images=_photos(wh)[1], return_tensors="pt")["pixel_values"]
    layers = _compare(wh, model, net, x, _by_rank(prefix))
    with wh.session() as s:
        row = s.scalar(select(VisionModel).where(VisionModel.name == model))
        assert row.weights == f"hf:{folder.resolve()}"
    return layers


SMALL = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2
)


def _pil(name: str):
    # The PIL image processors (transformers 5; the only ones before it).
    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def test_hf_vit_and_dinov2_folders(wh: Warehouse, tmp_path: Path) -> None:
    vit = _hf_case(
        wh, tmp_path, transformers.ViTModel,
        transformers.ViTConfig(intermediate_size=64, **SMALL),
        _pil("ViTImageProcessor")(size={"height": 32, "width": 32}), prefix=1,
    )  # fmt: skip
    assert vit[0].module == "embeddings" and vit[-1].module == "pooler"
    assert len(vit) == 5 and vit[1].layout == "tokens:1"
    # A finished run of a folder is found again from its weights files, without the model.
    again = finished_extraction(
        wh, ExtractionOptions(f"hf:{tmp_path / 'ViTConfig'}", batch_size=2, shard_size=2,
        device="cpu", num_workers=0),
    )  # fmt: skip
    assert again is not None and again.status == "unchanged"
    assert again.layers == [r.module for r in vit]
    dino = _hf_case(
        wh, tmp_path, transformers.Dinov2Model,
        transformers.Dinov2Config(mlp_ratio=2, **SMALL),
        _pil("BitImageProcessor")(
            size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32}
        ),
        prefix=1,
    )  # fmt: skip
    assert [r.module for r in dino] == [
        "embeddings", "encoder.layer.0", "encoder.layer.1", "layernorm"
    ]  # fmt: skip
    # Registers: the class token and 4 register tokens are left out of the token mean.
    registers = _hf_case(
        wh, tmp_path, transformers.Dinov2WithRegistersModel,
        transformers.Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=4, **SMALL),
        _pil("BitImageProcessor")(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        prefix=5,
    )  # fmt: skip
    assert {r.layout for r in registers} == {"tokens:5"}


def test_hf_clip_vision_tower(wh: Warehouse, tmp_path: Path) -> None:
    clip = _hf_case(
        wh, tmp_path, transformers.CLIPVisionModel,
        transformers.CLIPVisionConfig(intermediate_size=64, **SMALL),
        _pil("CLIPImageProcessor")(
            size={"shortest_edge": 35}, crop_size={"height": 32, "width": 32}
        ),
        prefix=1,
    )  # fmt: skip
    assert clip[-1].module.endswith("post_layernorm") and clip[-1].layout == "vector"
    with wh.session() as s:  # no classifier: no predictions
        names = {r.name for r in s.scalars(select(VisionModel))}
        assert not s.scalar(
            select(Prediction.model).where(Prediction.model.in_([n for n in names if "CLIP" in n]))
        )


def test_hf_full_clip_checkpoint_loads_its_vision_tower(wh: Warehouse, tmp_path: Path) -> None:
    """An image-text CLIP folder: the vision tower with its projection (the image embedding)."""
    text = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(
        vision_config=dict(intermediate_size=64, **SMALL),
        text_config=dict(intermediate_size=32, **text),
        projection_dim=12,
    )
    torch.manual_seed(6)
    net = transformers.CLIPModel(config).eval()
    folder = tmp_path / "clip-full"
    net.save_pretrained(folder)
    processor = _pil("CLIPImageProcessor")(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(folder)
    model = _extract(wh, f"hf:{folder}")
    x = processor(images=_photos(wh)[1], return_tensors="pt")["pixel_values"]
    layers = _compare(wh, model, net, x, _by_rank(1), run=lambda x: net.get_image_features(x))
    assert [r.module for r in layers][-2:] == ["vision_model.post_layernorm", "visual_projection"]
    assert (layers[-1].dim, layers[-1].layout) == (12, "vector")


def test_hf_vit_saved_without_its_pooler_extracts(wh: Warehouse, tmp_path: Path) -> None:
    """As the facebook/dino-vit* checkpoints: the pooler's weights are missing, so it leaves
    the default probes and the run records the missing keys; a probe it reaches is refused."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(8)
    net = transformers.ViTModel(
        transformers.ViTConfig(intermediate_size=64, **SMALL), add_pooling_layer=False
    ).eval()
    folder = tmp_path / "vit-no-pooler"
    net.save_pretrained(folder)
    processor = _pil("ViTImageProcessor")(size={"height": 32, "width": 32})
    processor.save_pretrained(folder)
    model = _extract(wh, f"hf:{folder}")
    x = processor(images=_photos(wh)[1], return_tensors="pt")["pixel_values"]
    layers = _compare(wh, model, net, x, _by_rank(1))
    # Embeddings, both encoder layers, the final norm: no pooler.
    assert [r.module for r in layers][::3] == ["embeddings", "layernorm"] and len(layers) == 4
    with wh.session() as s:
        model_id = s.scalar(select(VisionModel.model_id).where(VisionModel.name == model))
        run = s.scalar(select(ExtractionRun).where(ExtractionRun.model_id == model_id))
    assert json.loads(run.params)["missing_weights"] == ["pooler.dense.bias", "pooler.dense.weight"]
    with pytest.raises(
        InputError, match=r"lacks weight pooler\.dense\.bias, inside probed layer pooler"
    ):
        _extract(wh, f"hf:{folder}", layers="layernorm,pooler")
    # A weight missing inside the encoder reaches every later layer: refused, named.
    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if not k.startswith("embeddings") and k.endswith(".weight"))
    del state[key]
    save_file(state, str(weights), metadata={"format": "pt"})
    # (Named as the model names it: transformers 5 renames checkpoint keys as it loads.)
    named = r"lacks weight (encoder\.)?layers?\.0\.\S+\.weight, (inside|before) probed layer"
    with pytest.raises(InputError, match=named):
        _extract(wh, f"hf:{folder}", name="vit-damaged")


def test_module_source_refuses_an_ambiguous_layout(wh: Warehouse) -> None:
    ref = "module:tests.integration.vision_modules:tiny_net"
    args = dict(preprocessing="imagenet,resize=40,crop=32", layers="stem,tokens,mix,head")
    with pytest.raises(ConfigError, match=r"tiny_net/tokens.*ambiguous.*--layout 'tokens="):
        _extract(wh, ref, **args)
    model = _extract(wh, ref, layouts="tokens=tokens,mix=tokens", **args)
    import torchvision.transforms as T

    from tests.integration.vision_modules import tiny_net

    transform = T.Compose(
        [T.Resize(40), T.CenterCrop(32), T.ToTensor(),
         T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )  # fmt: skip
    x = torch.stack([transform(img) for img in _photos(wh)[1]])
    layers = _compare(wh, model, tiny_net(), x, _by_rank(0))
    assert [r.layout for r in layers] == ["channels_first", "tokens", "tokens", "vector"]


def test_models_lists_sources_and_a_models_default_probes(tmp_path: Path) -> None:
    from semwh.extract.catalog import list_models

    sources = {entry.source: entry for entry in list_models("timm:test_vi*")}
    assert list(sources) == ["timm"] and "timm:test_vit" in sources["timm"].models
    every = {entry.source for entry in list_models("resnet5*")}
    assert every == {"torchvision", "timm", "hf", "module"}
    assert (
        "resnet50" in next(e for e in list_models("resnet5*") if e.source == "torchvision").models
    )
    folder = tmp_path / "dino"
    transformers.Dinov2Model(transformers.Dinov2Config(mlp_ratio=2, **SMALL)).save_pretrained(
        folder
    )
    transformers.BitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(folder)
    out = run_cli("models", f"hf:{folder}").stdout
    lines = [line.split() for line in out.splitlines()]
    probes = [parts[1] for parts in lines if parts and parts[0].isdigit()]
    assert probes == ["embeddings", "encoder.layer.0", "encoder.layer.1", "layernorm"]
    first = next(parts for parts in lines if parts[:2] == ["0", "embeddings"])
    assert first[2:] == ["17x32", "tokens:1", "tokens-mean", "dim", "32"]
    assert "predictions: none" in out


def test_openclip_vectors_equal_open_clips_own_forward(wh: Warehouse, tmp_path: Path) -> None:
    """A small OpenCLIP config (open_clip's add_model_config) and a checkpoint file of it:
    every stored layer against a hooked forward of open_clip's own model on its own
    transform, the image embedding against encode_image."""
    open_clip = pytest.importorskip("open_clip")
    config = tmp_path / "semwh-small-ViT.json"
    vision = dict(image_size=32, layers=3, width=32, patch_size=8, head_width=16)
    text = dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
    config.write_text(json.dumps({"embed_dim": 12, "vision_cfg": vision, "text_cfg": text}))
    open_clip.add_model_config(config)
    torch.manual_seed(3)
    clip, _, transform = open_clip.create_model_and_transforms("semwh-small-ViT")
    clip.eval()
    checkpoint = tmp_path / "small.pt"
    torch.save(clip.state_dict(), checkpoint)  # a full checkpoint: both towers
    model = _extract(wh, "openclip:semwh-small-ViT", weights_file=checkpoint)
    ids, photos = _photos(wh)
    x = torch.stack([transform(img) for img in photos])
    layers = _stored_layers(wh, model)
    assert [r.module for r in layers] == [
        "visual.ln_pre", *[f"visual.transformer.resblocks.{i}" for i in range(3)],
        "visual.ln_post", "image_embedding",
    ]  # fmt: skip
    captured: dict[str, torch.Tensor] = {}
    modules = dict(clip.named_modules())
    handles = [
        modules[r.module].register_forward_hook(
            lambda _m, _i, out, name=r.module: captured.update({name: out[:, 1:].mean(dim=1)})
        )
        for r in layers[:-1]
    ]
    with torch.no_grad():
        captured["image_embedding"] = clip.encode_image(x)
    for handle in handles:
        handle.remove()
    for row in layers:
        ref = captured[row.module].double().numpy()
        got = load_image_vectors(wh, f"{model}/{row.module}")
        assert got.image_ids.tolist() == ids and got.matrix.shape == ref.shape
        error = np.abs(got.matrix - ref).max() / np.abs(ref).max()
        assert error < 1e-5, (row.module, error)
    with wh.session() as s:
        row = s.scalar(select(VisionModel).where(VisionModel.name == model))
    assert (row.name, row.weights) == ("openclip-semwh-small-ViT", f"file:{checkpoint}")
    # A checkpoint that does not fit is refused in one line, naming the file.
    state = clip.state_dict()
    del state["visual.conv1.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(InputError, match=r"partial\.pt \(not an OpenCLIP checkpoint"):
        _extract(wh, "openclip:semwh-small-ViT", weights_file=tmp_path / "partial.pt", name="x")
    cfg = clip.visual.preprocess_cfg
    assert json.loads(row.preprocessing) == {
        "resize": 32, "crop": 32, "interpolation": cfg["interpolation"], "scale": 255.0,
        "mean": list(cfg["mean"]), "std": list(cfg["std"]), "color": "RGB",
    }  # fmt: skip


def test_openclip_vit_b_32_stores_its_residual_blocks_in_depth_order(
    tmp_path: Path, samples_dir: Path
) -> None:
    """`extract openclip:ViT-B-32 --weights none` (nothing downloaded) on one photo."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    one = new_warehouse(tmp_path / "wh")
    add_sample_images(one, [sorted(samples_dir.glob("*.jpg"))[7]])
    options = ExtractionOptions(
        "openclip:ViT-B-32", weights="none", device="cpu", num_workers=0, batch_size=1
    )
    model = run_extraction(one, options).model
    layers = _stored_layers(one, model)
    blocks = [f"visual.transformer.resblocks.{i}" for i in range(12)]
    assert [r.module for r in layers] == [
        "visual.ln_pre", *blocks, "visual.ln_post", "image_embedding"
    ]  # fmt: skip
    assert {(r.dim, r.layout) for r in layers[:-1]} == {(768, "tokens:1")}
    assert (layers[-1].dim, layers[-1].layout) == (512, "vector")
    with one.session() as s:
        row = s.scalar(select(VisionModel).where(VisionModel.name == model))
        run = s.scalar(select(ExtractionRun).where(ExtractionRun.model_id == row.model_id))
    assert (row.name, row.architecture, row.weights) == (
        "openclip-ViT-B-32-random", "openclip:ViT-B-32", "none"
    )  # fmt: skip
    assert json.loads(row.preprocessing) == {
        "resize": 224, "crop": 224, "interpolation": "bicubic", "scale": 255.0,
        "mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD), "color": "RGB",
    }  # fmt: skip
    assert json.loads(run.versions)["open_clip"] == open_clip.__version__
