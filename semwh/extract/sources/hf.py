"""``hf:ID_OR_DIR[@REVISION]``: a Hugging Face transformers vision model and its image processor.

A folder written by ``save_pretrained`` (model and image processor) works offline; a hub ID is
downloaded into the Hugging Face cache on first use. The model class follows the checkpoint:
``...ForImageClassification`` checkpoints keep their classifier (their logits give the stored
predictions); composite image-text checkpoints (CLIP, SigLIP, ...) load their vision tower
(with its projection when the family has one); anything else loads through ``AutoModel``. A
checkpoint may lack the weights of a head no probe reads (a ViT saved without its pooler, as the
facebook/dino-vit* checkpoints are): that head leaves the default probes, the missing keys are
recorded with the run, and a probe layer they would reach is refused, naming the weight.

The recorded weights are ``hf:ID@REVISION`` (or ``hf:DIR``) with the SHA-256 of the weights
files. Preprocessing comes from the image processor (resize of the shorter side or to a
square, centre crop with the processor's rounding, rescale, normalisation).

Default probes: the embedding output (the input of the first encoder layer), the hidden state
after every encoder layer, the final norm, the pooler or projection, and the classifier's
logits where there is one. Token outputs carry the class and register tokens the shape shows
beyond the patch grid of the input.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.custom_code import NO_CUSTOM_CODE, refuse_config_code, refuse_custom_code
from semwh.errors import ConfigError, InputError
from semwh.extract.layouts import CHANNELS_FIRST, LayoutRule, patch_count, shape_rule
from semwh.extract.preprocess import Preprocessing
from semwh.extract.spec import (
    MISSING_WEIGHTS,
    ModelSource,
    ModelSpec,
    SpecRequest,
    check_mode,
    default_name,
    generic_blocks,
    import_library,
    on_meta,
    seeded,
    with_preprocessing,
)

#: PIL resampling codes of image processors -> torchvision interpolation names.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class HfSource(ModelSource):
    """Hugging Face transformers vision models: a hub ID or a ``save_pretrained`` folder."""

    name = "hf"
    requires = ("transformers",)
    libraries = ("transformers",)
    note = (
        "hf:HUB_ID[@REVISION] or hf:DIR (a save_pretrained folder); ViT, DINOv2, CLIP "
        "vision towers and other transformers vision models"
    )

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        return hf_spec(ref, request)


def import_transformers() -> Any:
    transformers = import_library(
        "transformers", "hf: models need the transformers package: pip install 'semwh[vision]'"
    )
    transformers.logging.set_verbosity_error()
    return transformers


def _quiet(transformers: Any) -> None:
    # Loading reports and progress bars go to stderr; the library never prints.
    try:
        transformers.utils.logging.disable_progress_bar()
    except AttributeError:
        pass


def preprocessing_of(processor: dict[str, Any], reference: str) -> Preprocessing:
    """An image processor's settings (its ``to_dict()``) as a :class:`Preprocessing`.

    Raises:
        ConfigError: Settings semwh does not reproduce (no resize, a non-square target).
    """

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{reference}: the image processor {why}; pass --preprocessing")

    if not processor.get("do_resize", True):
        raise fail("does not resize images")
    size = processor.get("size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if "shortest_edge" in size:
        resize, mode = int(size["shortest_edge"]), "shorter"
    elif "height" in size and "width" in size:
        if int(size["height"]) != int(size["width"]):
            raise fail(f"resizes to {size['height']}x{size['width']}, not a square")
        resize, mode = int(size["height"]), "square"
    else:
        raise fail(f"has a resize rule semwh does not reproduce ({size})")
    crop = resize
    if processor.get("do_center_crop"):
        crop_size = processor.get("crop_size") or {}
        if isinstance(crop_size, int):
            crop_size = {"height": crop_size, "width": crop_size}
        if int(crop_size.get("height", 0)) != int(crop_size.get("width", -1)):
            raise fail(f"crops to a non-square {crop_size}")
        crop = int(crop_size["height"])
    elif mode == "shorter":
        raise fail("keeps the aspect ratio without a centre crop")
    resample = processor.get("resample", 2)
    interpolation = _RESAMPLE.get(int(getattr(resample, "value", resample)), "bilinear")
    scale = (
        1.0 / float(processor.get("rescale_factor", 1 / 255))
        if processor.get("do_rescale", True)
        else 1.0
    )
    if processor.get("do_normalize", True):
        mean = tuple(float(v) for v in processor.get("image_mean", (0.5, 0.5, 0.5)))
        std = tuple(float(v) for v in processor.get("image_std", (0.5, 0.5, 0.5)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocessing(
        resize=resize,
        crop=crop,
        interpolation=interpolation,
        scale=scale,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        resize_mode=mode,
        crop_rounding="floor",
    )


def _folder_weights(folder: Path) -> tuple[Path, ...]:
    """The weights files of a ``save_pretrained`` folder (the shards of an index, in order)."""
    for index in _WEIGHT_INDEXES:
        if (folder / index).is_file():
            try:
                weight_map = json.loads((folder / index).read_text())["weight_map"]
            except (OSError, ValueError, KeyError) as exc:
                raise InputError(f"cannot read {folder / index}: {exc}") from exc
            return tuple(folder / name for name in sorted(set(weight_map.values())))
    for single in _WEIGHT_FILES:
        if (folder / single).is_file():
            return (folder / single,)
    return ()


def _cached_weights(repo: str, revision: str | None) -> tuple[Path, ...]:
    """The weights of a hub checkpoint in the Hugging Face cache, if they are there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return ()
    for filename in (*_WEIGHT_INDEXES, *_WEIGHT_FILES):
        found = try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(found, str):
            return _folder_weights(Path(found).parent)
    return ()


def _vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


def _model_class(transformers: Any, config: Any, reference: str) -> tuple[Any, Any]:
    """(model class, config to build it from) for a checkpoint's config."""
    archs = list(getattr(config, "architectures", None) or [])
    vision = getattr(config, "vision_config", None)
    if vision is not None:
        family = type(config).__name__.removesuffix("Config")
        for suffix in ("VisionModelWithProjection", "VisionModel"):
            cls = getattr(transformers, f"{family}{suffix}", None)
            if cls is not None:
                tower = copy.deepcopy(vision)
                if suffix.endswith("Projection") and hasattr(config, "projection_dim"):
                    tower.projection_dim = config.projection_dim
                return cls, tower
        raise ConfigError(f"{reference}: no vision tower class for {type(config).__name__}")
    if any(a.endswith("ForImageClassification") for a in archs):
        return transformers.AutoModelForImageClassification, config
    named = [getattr(transformers, a, None) for a in archs if "Vision" in a]
    if named and named[0] is not None:
        return named[0], config
    return transformers.AutoModel, config


def _encoder_layers(model: nn.Module, n_layers: int | None) -> str | None:
    """The module path of the list of encoder layers."""
    lists = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList)
        and (n_layers is None or len(m) == n_layers)
        and name.rsplit(".", 1)[-1] in ("layer", "layers", "blocks")
    ]
    return min(lists, key=len) if lists else None


def hf_layers(model: nn.Module) -> tuple[list[str], list[str], str | None]:
    """(default, all, logits) module paths of a transformers vision model."""
    modules = dict(model.named_modules())
    config = _vision_config(getattr(model, "config", None))
    encoder = _encoder_layers(model, getattr(config, "num_hidden_layers", None))
    if encoder is None:
        # Not a transformer encoder (a convolutional checkpoint): its top-level blocks.
        blocks = generic_blocks(model)
        return blocks, blocks, "classifier" if "classifier" in modules else None
    parts = encoder.split(".")[:-1]
    if parts and parts[-1] == "encoder":
        parts = parts[:-1]
    at = "".join(f"{p}." for p in parts)
    layers = [f"{encoder}.{sub}" for sub, _ in modules[encoder].named_children()]
    default: list[str] = []
    for stem in ("pre_layrnorm", "embeddings"):
        if f"{at}{stem}" in modules:
            default.append(f"{at}{stem}")
            break
    default += layers
    # Final norm, then the pooled embedding: ViT's pooler, CLIP's normed class token,
    # SigLIP's attention-pooling head.
    for tail in ("layernorm", "post_layernorm", "pooler", "head"):
        module = modules.get(f"{at}{tail}")
        if module is not None and not isinstance(module, nn.Identity):
            default.append(f"{at}{tail}")
    logits = None
    for head in ("visual_projection", "image_projection", "classifier"):
        module = modules.get(head)
        if module is not None and not isinstance(module, nn.Identity):
            default.append(head)
            logits = head if head == "classifier" else None
    return default, list(default), logits


def hf_layout_rule(model: nn.Module, preprocessing: Preprocessing) -> LayoutRule:
    """Token outputs with the prefix tokens beyond the input's patch grid; patch convolutions
    channels-first."""
    config = _vision_config(getattr(model, "config", None))
    num_patches = patch_count(getattr(config, "patch_size", None), preprocessing.crop)
    return shape_rule(CHANNELS_FIRST, num_patches)


def hf_spec(ref: str, request: SpecRequest) -> ModelSpec:
    """The spec of ``hf:ID_OR_DIR[@REVISION]`` (see the module docstring).

    Raises:
        MissingDependencyError: transformers is not installed.
        ConfigError: Not a vision checkpoint, or a weights file was given.
        InputError: The checkpoint cannot be read, or asks to run its own code.
    """
    mode, seed = request.mode, request.seed
    reference = f"hf:{ref}"
    folder = Path(ref).expanduser()
    local = folder.is_dir()
    if local:
        # Before transformers reads anything: a folder's own code is never run or asked about.
        refuse_custom_code(folder)
    transformers = import_transformers()
    _quiet(transformers)
    check_mode(reference, mode, ("default", "none"))
    if request.weights_file is not None:
        raise ConfigError(
            f"{reference}: Hugging Face models load their weights from the folder or hub ID; "
            "save them with save_pretrained and pass hf:DIR instead of --weights-file"
        )
    repo, revision = (str(folder.resolve()), None) if local else (ref.partition("@")[0], None)
    if not local and "@" in ref:
        revision = ref.partition("@")[2] or None
    try:
        config = transformers.AutoConfig.from_pretrained(repo, revision=revision, **NO_CUSTOM_CODE)
    except Exception as exc:  # noqa: BLE001 - a bad value fails with many kinds of error
        text = " ".join(str(exc).split())
        first = (text if len(text) <= 300 else str(exc).strip().splitlines()[0]) or repr(exc)
        where = f"folder {repo}" if local else f"hub ID {repo}"
        raise InputError(f"{reference}: cannot read the config of {where}: {first}") from exc
    refuse_config_code(config, reference)
    cls, build_config = _model_class(transformers, config, reference)
    vision = _vision_config(build_config)
    if (
        getattr(vision, "patch_size", None) is None
        and getattr(vision, "num_channels", None) is None
    ):
        raise ConfigError(
            f"{reference} is not a vision model (config type {config.model_type}); semwh "
            "extract probes image models"
        )
    base: Preprocessing | None = None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(
            repo, revision=revision, **NO_CUSTOM_CODE
        )
        base = preprocessing_of(processor.to_dict(), reference)
    except ConfigError:
        # A processor semwh does not reproduce: the user's preprocessing replaces it.
        if not request.preprocessing:
            raise
    except (OSError, ValueError, KeyError):
        pass  # no image processor saved: with_preprocessing asks for one
    prep = with_preprocessing(base, request.preprocessing, reference)
    short = Path(repo).name if local else repo.rsplit("/", 1)[-1]
    architecture = reference if not local else f"hf:{repo}"
    auto = cls.__name__.startswith("Auto")

    def from_config() -> nn.Module:
        if auto:
            return cls.from_config(build_config, **NO_CUSTOM_CODE)
        return cls(build_config)

    used_seed: int | None = None
    find: Callable[[], tuple[Path, ...]] | None = None
    if mode == "none":

        def build() -> nn.Module:
            return seeded(from_config, seed)

        label, used_seed = "none", seed
    else:

        def build() -> nn.Module:
            try:
                model, info = cls.from_pretrained(
                    repo,
                    config=build_config,
                    revision=revision,
                    output_loading_info=True,
                    **NO_CUSTOM_CODE,
                    **_float32(transformers),
                )
            except Exception as exc:  # noqa: BLE001 - a damaged file: many kinds of error
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                raise InputError(
                    f"{reference}: cannot load the weights from {repo} (a truncated or "
                    f"damaged file?): {first}"
                ) from exc
            mismatched = list(info.get("mismatched_keys") or [])
            if mismatched:
                raise InputError(
                    f"{reference}: the checkpoint's weights do not fit {cls.__name__} "
                    f"(mismatched {mismatched[:3]})"
                )
            model = model.float()
            # Weights the checkpoint lacks (a head saved without, as a ViT without its pooler)
            # stay initialised: the probe layers they reach are refused, the rest extract.
            setattr(model, MISSING_WEIGHTS, tuple(sorted(info.get("missing_keys") or [])))
            return model

        label = f"hf:{repo}" if local else f"hf:{repo}@{revision or 'main'}"

        def find() -> tuple[Path, ...]:
            return _folder_weights(Path(repo)) if local else _cached_weights(repo, revision)

    key = "none" if mode == "none" else "file"
    return ModelSpec(
        name=request.name or default_name(short, key, None),
        architecture=architecture,
        weights=label,
        seed=used_seed,
        preprocessing=prep,
        weights_paths=(),
        build=build,
        skeleton=on_meta(from_config),
        probes=hf_layers,
        layout_rule=hf_layout_rule,
        source="hf",
        find_weights=find,
    )


def _float32(transformers: Any) -> dict[str, Any]:
    # Checkpoints saved in half precision are extracted in fp32 like every other model
    # (--precision chooses autocast); the keyword was renamed in transformers 4.56.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": torch.float32} if (major, minor) >= (4, 56) else {"torch_dtype": torch.float32}
