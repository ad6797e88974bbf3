"""Model sources behind one model spec: ``torchvision:``, ``timm:``, ``hf:`` and ``module:``.

A model reference is ``SOURCE:REF``; without a known prefix it is a torchvision model (or
``efficientnet_lite0``), built by :mod:`semwh.extract.models`. Each other source builds a
:class:`semwh.extract.models.ModelSpec`: the registry name, the weights identity (the weights
files' SHA-256 plus the source's own id: timm tag, Hugging Face revision), the preprocessing,
the default probe layers (block outputs in depth order) and the layout rule of its outputs.
timm and transformers are optional (``pip install 'semwh[vision]'``): they are imported only
when their prefix is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semwh.extract.models import ModelSpec
    from semwh.extract.preprocess import Preprocessing

SOURCES = ("torchvision", "timm", "hf", "module")


def split_source(reference: str) -> tuple[str, str]:
    """``timm:vit_small_patch16_224`` -> (``timm``, ``vit_small_patch16_224``); no known
    prefix -> (``torchvision``, reference)."""
    prefix, sep, rest = reference.partition(":")
    if sep and prefix in SOURCES:
        return prefix, rest
    return "torchvision", reference


def source_spec(
    reference: str,
    mode: str,
    weights_file: str | Path | None,
    seed: int,
    name: str | None,
    preprocessing: str | dict[str, Any] | Preprocessing | None,
) -> ModelSpec | None:
    """The spec of a timm, Hugging Face or module model; None for torchvision models.

    Args:
        reference: The model reference (``timm:NAME``, ``hf:ID_OR_DIR``, ...).
        mode: ``default``, ``file`` or ``none`` (seeded random weights).
        weights_file: The local weights file of mode ``file``.
        seed: Seed of random weights.
        name: Registry name (default from the reference).
        preprocessing: Replaces or adjusts the source's preprocessing.
    """
    source, ref = split_source(reference)
    if source == "timm":
        from semwh.extract.sources.timm import timm_spec

        return timm_spec(ref, mode, weights_file, seed, name, preprocessing)
    if source == "hf":
        from semwh.extract.sources.hf import hf_spec

        return hf_spec(ref, mode, weights_file, seed, name, preprocessing)
    if source == "module":
        from semwh.extract.sources.module import module_spec

        return module_spec(ref, mode, weights_file, seed, name, preprocessing)
    return None


def check_mode(reference: str, mode: str, allowed: tuple[str, ...]) -> None:
    from semwh.errors import ConfigError

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
    from semwh.errors import ConfigError
    from semwh.extract.preprocess import Preprocessing, parse_preprocessing

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


__all__ = ["SOURCES", "check_mode", "source_spec", "split_source", "with_preprocessing"]
