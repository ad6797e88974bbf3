"""The model-source registry: one :class:`~semwh.extract.spec.ModelSource` per file, plus plugins.

A model reference is ``SOURCE:REF`` (``timm:vit_small_patch16_224``, ``hf:DIR``,
``openclip:ViT-B-32@openai``, ``module:PKG.MOD:CALLABLE``); a reference without a known
prefix is a torchvision model unless a source without prefix claims it
(``efficientnet_lite0``). Each source builds a :class:`~semwh.extract.spec.ModelSpec`;
:mod:`semwh.extract.networks`, :mod:`semwh.extract.catalog` and the provenance of extraction runs
read this registry and nothing else.

Outside packages add sources through the entry-point group ``semwh.sources``: the entry
point's name is the source's prefix and its object a ``ModelSource`` subclass (or instance)
whose ``name`` is that prefix. A plugin is loaded when its prefix is used or sources are
listed; one that cannot be loaded is reported by name, never with a traceback. The optional
packages of the built-in sources (timm, transformers, open-clip-torch) are imported only when
their prefix is used.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

from semwh.errors import ConfigError
from semwh.extract.sources.hf import HfSource
from semwh.extract.sources.lite0 import EfficientNetLite0Source
from semwh.extract.sources.module import ModuleSource
from semwh.extract.sources.openclip import OpenClipSource
from semwh.extract.sources.timm import TimmSource
from semwh.extract.sources.torchvision import TorchvisionSource
from semwh.extract.spec import ModelSource

#: The entry-point group outside packages register their sources under.
ENTRY_POINT_GROUP = "semwh.sources"

#: The built-in sources, in listing order; the first is the default of plain references.
BUILTIN: tuple[ModelSource, ...] = (
    TorchvisionSource(),
    EfficientNetLite0Source(),
    TimmSource(),
    HfSource(),
    OpenClipSource(),
    ModuleSource(),
)
DEFAULT = BUILTIN[0]

#: Names of the built-in sources (``torchvision``, ``efficientnet_lite0``, ``timm``, ...).
SOURCES = tuple(source.name for source in BUILTIN)


def _entry_points() -> list[metadata.EntryPoint]:
    # Read each time: a package installed (or a folder put on sys.path) since is seen.
    builtin = set(SOURCES)
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in builtin]


def _describe(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"model source plugin {ep.name!r} ({ep.value}{where})"


def load_plugin(ep: metadata.EntryPoint) -> ModelSource:
    """The source an entry point names.

    Raises:
        ConfigError: It cannot be imported, is not a ``ModelSource``, or names another prefix.
    """
    what = _describe(ep)
    try:
        obj: Any = ep.load()
        source = obj() if isinstance(obj, type) else obj
    except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; name it instead
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"{what} cannot be loaded: {type(exc).__name__}: {first}; fix or uninstall that package"
        ) from exc
    if not isinstance(source, ModelSource):
        raise ConfigError(
            f"{what} is a {type(source).__name__}, not a semwh.extract.spec.ModelSource; fix or "
            "uninstall that package"
        )
    if source.name != ep.name or not source.prefixed:
        raise ConfigError(
            f"{what} names its source {source.name!r}: the entry point's name must be the "
            "source's prefix; fix or uninstall that package"
        )
    return source


def shadowing() -> list[metadata.EntryPoint]:
    """Entry points that name a built-in source's prefix: they are never loaded (the
    built-in source keeps its prefix), and ``semwh models`` says so."""
    builtin = set(SOURCES)
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name in builtin]


def shadowing_reason(ep: metadata.EntryPoint) -> str:
    return f"{_describe(ep)} takes the built-in prefix {ep.name!r} and is ignored: rename it"


def plugins() -> list[metadata.EntryPoint]:
    """The entry points of outside sources (not loaded)."""
    return _entry_points()


def loaded_sources() -> list[ModelSource]:
    """The built-in sources and the plugins this process has already imported (for provenance:
    nothing is imported here)."""
    out = list(BUILTIN)
    for ep in _entry_points():
        if ep.module in sys.modules:
            try:
                out.append(load_plugin(ep))
            except ConfigError:
                continue
    return out


def source_named(name: str) -> ModelSource | None:
    """The source of a prefix (a plugin is loaded here), or None when none has it.

    Raises:
        ConfigError: The plugin of that prefix cannot be loaded.
    """
    for source in BUILTIN:
        if source.name == name and source.prefixed:
            return source
    for ep in _entry_points():
        if ep.name == name:
            return load_plugin(ep)
    return None


def _has_prefix(name: str) -> bool:
    return any(s.name == name and s.prefixed for s in BUILTIN) or any(
        ep.name == name for ep in _entry_points()
    )


def split_source(reference: str) -> tuple[str, str]:
    """``timm:vit_small_patch16_224`` -> (``timm``, ``vit_small_patch16_224``); a reference
    without a known prefix -> (the source that claims it, or ``torchvision``, reference)."""
    prefix, sep, rest = reference.partition(":")
    if sep and _has_prefix(prefix):
        if prefix != DEFAULT.name:
            return prefix, rest
        reference = rest
    for source in BUILTIN:
        if not source.prefixed and source.claims(reference):
            return source.name, reference
    return DEFAULT.name, reference


def resolve(reference: str) -> tuple[ModelSource, str]:
    """The source of a reference and the reference without its prefix.

    Raises:
        ConfigError: The reference names a plugin that cannot be loaded.
    """
    name, ref = split_source(reference)
    for source in BUILTIN:
        if source.name == name:
            return source, ref
    found = source_named(name)
    assert found is not None  # split_source returned a known prefix
    return found, ref


__all__ = [
    "BUILTIN",
    "DEFAULT",
    "ENTRY_POINT_GROUP",
    "SOURCES",
    "load_plugin",
    "loaded_sources",
    "plugins",
    "resolve",
    "source_named",
    "split_source",
]
