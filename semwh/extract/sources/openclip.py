"""``openclip:MODEL[@PRETRAINED]``: the vision tower of an OpenCLIP model (open-clip-torch).

``MODEL`` is one of open_clip's model configs (``ViT-B-32``, ``RN50``, ``convnext_base``, ...)
and ``PRETRAINED`` one of its pretrained tags for that model (``openai``,
``laion2b_s34b_b79k``, ...). Weights: ``default`` is the tag's checkpoint (downloaded into
the Hugging Face cache on first use, found there afterwards; a tag is required);
``--weights-file`` loads a full OpenCLIP checkpoint offline through open_clip's own loader;
``none`` is a seeded random initialisation (nothing is downloaded). The recorded weights are
``openclip:MODEL@PRETRAINED`` (or ``file:PATH``) with the file's SHA-256.

Only the vision tower is probed. Preprocessing is open_clip's own for the model and tag: its
image size, mean, std, interpolation and resize mode (``shortest``: resize the shorter side
and centre-crop; ``squash``: resize both sides), recorded with the model.

Default probes: the stem (``visual.ln_pre``, or the patch embedding ``visual.conv1``, or a
ResNet's stem pool), every residual block in depth order (``visual.transformer.resblocks.N``,
``visual.layerI.J``, a timm trunk's blocks), the final norm, and ``image_embedding``: the
tower's pooled and projected output, the image embedding the text tower is aligned with.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.extract.layouts import CHANNELS_FIRST, LayoutRule, patch_count, shape_rule
from semwh.extract.preprocess import Preprocessing
from semwh.extract.spec import (
    ModelSource,
    ModelSpec,
    SpecRequest,
    check_mode,
    default_name,
    generic_blocks,
    import_library,
    seeded,
    with_preprocessing,
)

_INSTALL = "pip install 'semwh[models]'"
_RESIZE_MODES = {"shortest": "shorter", "squash": "square"}
_CHECKPOINTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenClipSource(ModelSource):
    """OpenCLIP models by config name, with a pretrained tag."""

    name = "openclip"
    requires = ("open_clip",)
    install = _INSTALL
    libraries = ("open_clip",)
    note = (
        "openclip:MODEL@PRETRAINED (pretrained weights) or openclip:MODEL with --weights none "
        "or --weights-file; the vision tower"
    )

    def models(self, glob: str) -> list[str]:
        open_clip = import_open_clip()
        tags: dict[str, list[str]] = {}
        for model, tag in open_clip.list_pretrained():
            tags.setdefault(model, []).append(tag)
        out: list[str] = []
        for model in open_clip.list_models():
            # Case-insensitive: its names mix cases (ViT-B-32, convnext_base, RN50).
            if fnmatch.fnmatchcase(model.lower(), glob.lower()):
                out += [f"openclip:{model}@{tag}" for tag in tags.get(model, [])] or [
                    f"openclip:{model}"
                ]
        return out

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        return openclip_spec(ref, request)


def import_open_clip() -> Any:
    return import_library(
        "open_clip", f"openclip: models need the open-clip-torch package: {_INSTALL}"
    )


@contextmanager
def _quiet() -> Iterator[None]:
    # open_clip reports on the root logger (e.g. "No pretrained weights loaded" for random
    # weights); the library never prints.
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)


class ImageEmbedding(nn.Module):
    """The vision tower's output (pooled and projected): a module so it can be probed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class OpenClipImage(nn.Module):
    """An OpenCLIP vision tower (``visual``, the state-dict prefix of a full checkpoint) and a
    probe point on its output; the forward returns the embedding in a dict, so it is never
    taken for class logits."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.image_embedding = ImageEmbedding()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embedding": self.image_embedding(self.visual(x))}


def _not_identity(modules: dict[str, nn.Module], name: str) -> bool:
    module = modules.get(name)
    return module is not None and not isinstance(module, nn.Identity)


def openclip_layers(model: nn.Module) -> tuple[list[str], list[str], str | None]:
    """(default, all, logits) module paths of a wrapped vision tower (see the module docstring)."""
    visual: Any = model.visual
    modules = dict(visual.named_modules())
    blocks: list[str]
    default: list[str]
    every: list[str]
    resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if isinstance(resblocks, nn.ModuleList | nn.Sequential):
        blocks = [f"transformer.resblocks.{sub}" for sub, _ in resblocks.named_children()]
        stem = "ln_pre" if _not_identity(modules, "ln_pre") else "conv1"
        tail = [n for n in ("ln_post", "attn_pool") if _not_identity(modules, n)]
        default = [stem, *blocks, *tail]
        every = list(dict.fromkeys(["conv1", stem, *blocks, *tail]))
    elif all(hasattr(visual, f"layer{i}") for i in range(1, 5)):
        # ModifiedResNet: three-convolution stem with an average pool, four stages, and an
        # attention pool whose output is the embedding.
        stages = [(f"layer{i}", getattr(visual, f"layer{i}")) for i in range(1, 5)]
        blocks = [f"{name}.{sub}" for name, stage in stages for sub, _ in stage.named_children()]
        default = ["avgpool", *blocks]
        every = generic_blocks(visual)
    elif isinstance(getattr(visual, "trunk", None), nn.Module):
        from semwh.extract.sources.timm import timm_layers

        trunk_default, trunk_every, _ = timm_layers(visual.trunk)
        default = [f"trunk.{n}" for n in trunk_default]
        every = [f"trunk.{n}" for n in trunk_every]
    else:
        default = every = generic_blocks(visual)
    return (
        [f"visual.{n}" for n in default] + ["image_embedding"],
        [f"visual.{n}" for n in every] + ["image_embedding"],
        None,
    )


def openclip_layout_rule(model: nn.Module, preprocessing: Preprocessing) -> LayoutRule:
    """Feature maps channels-first; transformer tokens with the prefix tokens beyond the
    input's patch grid (checked against the shape)."""
    visual: Any = model.visual
    num_patches = patch_count(getattr(visual, "patch_size", None), preprocessing.crop)
    return shape_rule(CHANNELS_FIRST, num_patches)


def preprocessing_of(cfg: dict[str, Any], reference: str) -> Preprocessing:
    """open_clip's eval preprocessing (its ``preprocess_cfg``) as a :class:`Preprocessing`.

    Raises:
        ConfigError: A non-square size or the ``longest`` resize mode (resize and pad).
    """
    size = cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if int(height) != int(width):
        raise ConfigError(
            f"{reference}: input size {height}x{width} is not square; pass --preprocessing"
        )
    mode = str(cfg.get("resize_mode") or "shortest")
    if mode not in _RESIZE_MODES:
        raise ConfigError(
            f"{reference}: open_clip resize mode {mode!r} is not supported (shortest, squash); "
            "pass --preprocessing"
        )
    mean = cfg.get("mean") or (0.48145466, 0.4578275, 0.40821073)
    std = cfg.get("std") or (0.26862954, 0.26130258, 0.27577711)
    mean = (mean,) * 3 if isinstance(mean, float | int) else mean
    std = (std,) * 3 if isinstance(std, float | int) else std
    # open_clip evaluates with bicubic unless bilinear is named ("random" is for training).
    interpolation = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
    return Preprocessing(
        resize=int(height),
        crop=int(height),
        interpolation=interpolation,
        scale=255.0,
        mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in std),  # type: ignore[arg-type]
        resize_mode=_RESIZE_MODES[mode],
    )


def _cached_weights(open_clip: Any, model: str, tag: str) -> tuple[Path, ...]:
    """The tag's checkpoint in the Hugging Face cache, if it is there."""
    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    hub = str(cfg.get("hf_hub") or "")
    if not hub:
        return ()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return ()
    parts = hub.strip("/").split("/")
    repo_id = "/".join(parts[:2])
    names = ["/".join(parts[2:])] if len(parts) > 2 else []
    for name in (*names, *_CHECKPOINTS):
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return (Path(found),)
    return ()


def openclip_spec(ref: str, request: SpecRequest) -> ModelSpec:
    """The spec of ``openclip:MODEL[@PRETRAINED]`` (see the module docstring).

    Raises:
        MissingDependencyError: open-clip-torch is not installed.
        NotFoundError: Unknown model or pretrained tag.
        ConfigError: Default weights without a tag; preprocessing semwh does not reproduce.
    """
    open_clip = import_open_clip()
    reference = f"openclip:{ref}"
    mode, seed = request.mode, request.seed
    check_mode(reference, mode, ("default", "file", "none"))
    model, _, tag = ref.partition("@")
    known = open_clip.list_models()
    if model not in known:
        close = [m for m in known if model.lower() in m.lower()][:6]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise NotFoundError(
            f"unknown OpenCLIP model {model!r}{hint}; `semwh models 'openclip:*'` lists them"
        )
    tags = list(open_clip.list_pretrained_tags_by_model(model))
    if tag and tag not in tags:
        raise NotFoundError(
            f"OpenCLIP model {model} has no pretrained tag {tag!r} "
            f"(tags: {', '.join(tags) or 'none'})"
        )
    if mode == "default" and not tag:
        choices = ", ".join(f"{reference}@{t}" for t in tags[:4]) or "none"
        raise ConfigError(
            f"{reference} names no pretrained weights: add a tag ({choices}), or pass "
            "--weights none (random) or --weights-file"
        )

    def create(pretrained: str | None, device: str = "cpu") -> nn.Module:
        try:
            with _quiet():
                clip = open_clip.create_model(
                    model, pretrained=pretrained, device=device, pretrained_text=False
                )
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint fails in many ways
            text = str(exc).strip()
            first = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
            what = "random weights" if pretrained is None else f"weights {pretrained}"
            hint = "" if pretrained is None else " (not an OpenCLIP checkpoint of this model?)"
            raise InputError(f"{reference}: cannot build it with {what}{hint}: {first}") from exc
        visual = clip.visual
        transformer = getattr(visual, "transformer", None)
        if transformer is not None and getattr(transformer, "batch_first", True) is False:
            raise ConfigError(
                f"{reference}: this open_clip runs its transformer sequence-first; install "
                "open-clip-torch 3 or later"
            )
        return OpenClipImage(visual)

    def skeleton() -> nn.Module:
        with torch.device("meta"):
            return create(None, "meta")

    built: Any = skeleton()
    cfg = dict(built.visual.preprocess_cfg)
    if tag:
        from open_clip.transform import merge_preprocess_dict

        cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(model, tag) or {})
        cfg["size"] = built.visual.image_size
    try:
        base: Preprocessing | None = preprocessing_of(cfg, reference)
    except ConfigError:
        if not request.preprocessing:
            raise
        base = None
    prep = with_preprocessing(base, request.preprocessing, reference)

    paths: tuple[Path, ...] = ()
    find: Callable[[], tuple[Path, ...]] | None = None
    used_seed: int | None = None
    if mode == "none":

        def build() -> nn.Module:
            return seeded(lambda: create(None), seed)

        label, used_seed = "none", seed
    elif mode == "file":
        file = Path(request.weights_file)  # type: ignore[arg-type]
        if not file.is_file():
            raise InputError(f"weights file {file} does not exist")

        def build() -> nn.Module:
            return create(str(file))

        label, paths = f"file:{file}", (file,)
    else:

        def build() -> nn.Module:
            # Downloads into the Hugging Face cache on first use (never during tests).
            return create(tag)

        label = f"openclip:{model}@{tag}"

        def find() -> tuple[Path, ...]:
            return _cached_weights(open_clip, model, tag)

    key = "none" if mode == "none" else "file"
    short = f"openclip-{model}-{tag}" if tag else f"openclip-{model}"
    return ModelSpec(
        name=request.name or default_name(short, key, None),
        architecture=f"openclip:{model}@{tag}" if tag else f"openclip:{model}",
        weights=label,
        seed=used_seed,
        preprocessing=prep,
        weights_paths=paths,
        build=build,
        skeleton=skeleton,
        probes=openclip_layers,
        layout_rule=openclip_layout_rule,
        source="openclip",
        find_weights=find,
    )
