"""``timm:NAME[.TAG]``: a timm model, its pretrained config's preprocessing, its blocks.

Weights: ``default`` is timm's pretrained checkpoint of the tag (downloaded into the Hugging
Face cache on first use, found there afterwards); ``--weights-file`` loads a safetensors or
``.pth`` checkpoint offline through timm's own checkpoint loader; ``none`` is a seeded random
initialisation. The recorded weights are ``timm:NAME.TAG`` (or ``file:PATH``) with the file's
SHA-256.

Default probes: the stem (patch embedding or convolutional stem), every block of the stages
named by the model's ``feature_info`` in depth order, the final norm, the pooled embedding
(pre-logits) and the logits. 4-D outputs follow the model's ``output_fmt`` (Swin is
channels-last); token outputs carry ``num_prefix_tokens`` class/register/distillation tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.extract.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    Layout,
    LayoutRule,
    infer_layout,
    patch_count,
)
from semwh.extract.preprocess import INTERPOLATIONS, Preprocessing
from semwh.extract.spec import (
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

#: timm's default crop fraction when a pretrained config gives none.
DEFAULT_CROP_PCT = 0.875


class TimmSource(ModelSource):
    """timm's models by name, with a pretrained tag or not."""

    name = "timm"
    requires = ("timm",)
    libraries = ("timm",)
    note = "pretrained tags: timm:NAME.TAG"

    def models(self, glob: str) -> list[str]:
        return [f"timm:{n}" for n in import_timm().list_models(glob)]

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        return timm_spec(ref, request)


def import_timm() -> Any:
    return import_library("timm", "timm: models need the timm package: pip install 'semwh[vision]'")


def preprocessing_of(cfg: Any, reference: str) -> Preprocessing:
    """timm's eval transform of a pretrained config as a :class:`Preprocessing`.

    timm resizes to ``floor(size / crop_pct)`` (the shorter side for crop mode ``center``,
    both sides for ``squash``) and centre-crops ``size``.

    Raises:
        ConfigError: A non-square input size or a crop mode semwh does not reproduce.
    """
    _, height, width = cfg.input_size
    if height != width:
        raise ConfigError(
            f"{reference}: input size {height}x{width} is not square; pass --preprocessing"
        )
    crop_pct = cfg.crop_pct or DEFAULT_CROP_PCT
    mode = cfg.crop_mode or "center"
    if mode not in ("center", "squash"):
        raise ConfigError(
            f"{reference}: timm crop mode {mode!r} is not supported (center, squash); pass "
            "--preprocessing"
        )
    interpolation = (
        # "random" interpolation is a training augmentation: evaluate with bilinear.
        cfg.interpolation if cfg.interpolation in INTERPOLATIONS else "bilinear"
    )
    return Preprocessing(
        resize=math.floor(height / crop_pct),
        crop=int(height),
        interpolation=interpolation,
        scale=255.0,
        mean=tuple(float(v) for v in cfg.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.std),  # type: ignore[arg-type]
        resize_mode="square" if mode == "squash" else "shorter",
    )


def timm_layers(model: nn.Module) -> tuple[list[str], list[str], str | None]:
    """(default, all, logits) module paths of a timm model (see the module docstring)."""
    modules = dict(model.named_modules())
    blocks: list[str] = []
    for info in getattr(model, "feature_info", None) or []:
        name = info["module"] if isinstance(info, dict) else str(info)
        if name not in modules:
            continue
        module = modules[name]
        inner = getattr(module, "blocks", None)
        if isinstance(module, nn.Sequential | nn.ModuleList):
            blocks += [f"{name}.{sub}" for sub, _ in module.named_children()]
        elif isinstance(inner, nn.Sequential | nn.ModuleList):
            blocks += [f"{name}.blocks.{sub}" for sub, _ in inner.named_children()]
        else:
            blocks.append(name)
    default: list[str] = []
    for stem in ("patch_embed", "stem"):
        if stem in modules and not any(b == stem or b.startswith(stem + ".") for b in blocks):
            default.append(stem)
            break
    default += blocks
    if "norm" in modules and not isinstance(modules["norm"], nn.Identity):
        default.append("norm")
    get_classifier: Any = getattr(model, "get_classifier", None)
    classifier = get_classifier() if callable(get_classifier) else None
    # Distilled models have two heads (class and distillation), averaged in eval.
    heads = classifier if isinstance(classifier, tuple | list) else (classifier,)
    names = [
        next((n for n, m in modules.items() if m is head and n), None)
        for head in heads
        if isinstance(head, nn.Module) and not isinstance(head, nn.Identity)
    ]
    head_names = [n for n in names if n is not None]
    logits = head_names[0] if len(head_names) == 1 else None
    for pooled in ("fc_norm", "head.pre_logits", "global_pool", "head.global_pool"):
        if pooled in modules:
            default.append(pooled)
            break
    default += head_names
    default = list(dict.fromkeys(default))
    every = list(dict.fromkeys([*default[:1], *generic_blocks(model), *default[1:]]))
    return default, every, logits


def timm_layout_rule(model: nn.Module, preprocessing: Preprocessing) -> LayoutRule:
    """4-D outputs by the model's ``output_fmt``; tokens with its prefix tokens, by shape."""
    prefer: Layout = (
        CHANNELS_LAST if getattr(model, "output_fmt", "NCHW") == "NHWC" else CHANNELS_FIRST
    )
    patch_embed = getattr(model, "patch_embed", None)
    num_patches = patch_count(getattr(patch_embed, "patch_size", None), preprocessing.crop)
    modules = dict(model.named_modules())

    def rule(layer: str, shape: tuple[int, ...]) -> Layout | None:
        own = CHANNELS_FIRST if isinstance(modules.get(layer), nn.Conv2d) else prefer
        return infer_layout(shape, prefer_4d=own, num_patches=num_patches)

    return rule


def _cached_weights(cfg: Any) -> tuple[Path, ...]:
    """The pretrained checkpoint in the Hugging Face or torch hub cache, if it is there."""
    if getattr(cfg, "hf_hub_id", None):
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return ()
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else []
        names += ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        for filename in names:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return (Path(found),)
        return ()
    if getattr(cfg, "url", None):
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        return (path,) if path.exists() else ()
    return ()


def timm_spec(ref: str, request: SpecRequest) -> ModelSpec:
    """The spec of ``timm:NAME[.TAG]`` (see the module docstring).

    Raises:
        MissingDependencyError: timm is not installed.
        NotFoundError: Unknown model or tag.
    """
    mode, seed = request.mode, request.seed
    timm = import_timm()
    reference = f"timm:{ref}"
    check_mode(reference, mode, ("default", "file", "none"))
    arch, _, tag = ref.partition(".")
    if arch not in timm.list_models():
        close = timm.list_models(f"*{arch}*")[:6] or timm.list_models(f"{arch[:4]}*")[:6]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise NotFoundError(
            f"unknown timm model {arch!r}{hint}; `semwh models 'timm:*vit*'` lists them"
        )
    cfg = timm.models.get_pretrained_cfg(ref) if tag else timm.models.get_pretrained_cfg(arch)
    if tag and cfg is None:
        tags = timm.list_pretrained(f"{arch}.*")[:8]
        raise NotFoundError(
            f"timm model {arch} has no pretrained tag {tag!r} (tags: {', '.join(tags)})"
        )
    base = preprocessing_of(cfg, reference) if cfg is not None else None
    prep = with_preprocessing(base, request.preprocessing, reference)
    full = f"{arch}.{cfg.tag}" if cfg is not None and cfg.tag else arch
    architecture = f"timm:{full}"

    def create(**kwargs: Any) -> nn.Module:
        try:
            return timm.create_model(ref if tag else arch, **kwargs)
        except (RuntimeError, ValueError, KeyError, OSError) as exc:
            where = kwargs.get("checkpoint_path") or reference
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"weights {where} do not fit {reference}: {first}") from exc

    paths: tuple[Path, ...] = ()
    find = None
    used_seed: int | None = None
    if mode == "none":

        def build() -> nn.Module:
            return seeded(lambda: create(pretrained=False), seed)

        label, used_seed = "none", seed
    elif mode == "file":
        file = Path(request.weights_file)  # type: ignore[arg-type]
        if not file.is_file():
            raise InputError(f"weights file {file} does not exist")

        def build() -> nn.Module:
            return create(pretrained=False, checkpoint_path=str(file))

        label, paths = f"file:{file}", (file,)
    else:
        if cfg is None:
            raise ConfigError(f"{reference} has no pretrained weights: pass --weights-file or none")

        def build() -> nn.Module:
            # Downloads into the Hugging Face cache on first use (never during tests).
            return create(pretrained=True)

        label = architecture
        find = lambda: _cached_weights(cfg)  # noqa: E731
    key = "none" if mode == "none" else "file"
    return ModelSpec(
        # Prefixed: timm and torchvision share names (resnet50, vgg16, ...) for other weights.
        name=request.name or default_name(f"timm-{ref if tag else arch}", key, None),
        architecture=architecture,
        weights=label,
        seed=used_seed,
        preprocessing=prep,
        weights_paths=paths,
        build=build,
        skeleton=on_meta(lambda: timm.create_model(ref if tag else arch, pretrained=False)),
        probes=timm_layers,
        layout_rule=timm_layout_rule,
        source="timm",
        find_weights=find,
    )
