"""``module:PKG.MOD:CALLABLE``: a function of the user's that returns an ``nn.Module``.

The function is imported and called with no arguments; preprocessing must be given
(``--preprocessing`` or the run file's ``preprocessing``), since a plain module carries none.
Weights: ``default`` is the module as the function returns it (identified by the hash of its
state dict); ``--weights-file`` loads a state dict (``.pth`` or ``.safetensors``) into it
(identified by the file's SHA-256); ``none`` re-initialises every submodule that has
``reset_parameters`` from a seeded generator.

Default probes: the children of its top-level containers in definition order (as for any
torchvision model). A plain module says nothing about its layouts: 2-D outputs are vectors, a
4-D output is a feature map only when the probe shape allows one reading, and anything else
needs ``--layout`` (refused as ambiguous otherwise).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.extract.layouts import LayoutRule, shape_rule
from semwh.extract.preprocess import Preprocessing
from semwh.extract.spec import (
    ModelSource,
    ModelSpec,
    SpecRequest,
    check_mode,
    default_name,
    generic_blocks,
    load_into,
    load_state_dict_file,
    seeded,
    with_preprocessing,
)


class ModuleSource(ModelSource):
    """A function of the user's that returns a torch ``nn.Module``."""

    name = "module"
    note = "module:PKG.MOD:CALLABLE, a function returning a torch nn.Module (with --preprocessing)"

    def available(self) -> bool:
        return True

    def spec(self, ref: str, request: SpecRequest) -> ModelSpec:
        return module_spec(ref, request)


def import_callable(ref: str) -> Callable[[], Any]:
    """The function named by ``PKG.MOD:CALLABLE``.

    Raises:
        ConfigError: A malformed reference.
        NotFoundError: The module or the callable cannot be found.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"module:{ref}: expected module:PKG.MOD:CALLABLE, e.g. module:mylab.nets:build"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotFoundError(
            f"module:{ref}: cannot import {module_name} ({exc}); install it or add its folder "
            "to PYTHONPATH"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise NotFoundError(f"module:{ref}: {module_name} has no {attr!r}")
    if not callable(target):
        raise ConfigError(f"module:{ref}: {attr} is not callable")
    return target


def _call(fn: Callable[[], Any], ref: str) -> nn.Module:
    module = fn()
    if not isinstance(module, nn.Module):
        raise InputError(f"module:{ref} returned a {type(module).__name__}, not a torch nn.Module")
    return module


def _reinitialise(module: nn.Module) -> nn.Module:
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return module


def module_layers(model: nn.Module) -> tuple[list[str], list[str], str | None]:
    blocks = generic_blocks(model)
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no submodules to probe")
    every = [name for name, _ in model.named_modules() if name]
    return blocks, every, blocks[-1]


def module_layout_rule(_model: nn.Module, _preprocessing: Preprocessing) -> LayoutRule:
    return shape_rule(None, None)


def module_spec(ref: str, request: SpecRequest) -> ModelSpec:
    """The spec of ``module:PKG.MOD:CALLABLE`` (see the module docstring)."""
    mode, seed = request.mode, request.seed
    reference = f"module:{ref}"
    check_mode(reference, mode, ("default", "file", "none"))
    fn = import_callable(ref)
    prep = with_preprocessing(None, request.preprocessing, reference)
    short = ref.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    paths: tuple[Path, ...] = ()
    used_seed: int | None = None
    if mode == "none":

        def build() -> nn.Module:
            return seeded(lambda: _reinitialise(_call(fn, ref)), seed)

        label, used_seed = "none", seed
    elif mode == "file":
        file = Path(request.weights_file)  # type: ignore[arg-type]

        def build() -> nn.Module:
            module = _call(fn, ref)
            load_into(module, load_state_dict_file(file), str(file))
            return module

        label, paths = f"file:{file}", (file,)
    else:

        def build() -> nn.Module:
            return _call(fn, ref)

        label = reference
    key = "none" if mode == "none" else "file"
    return ModelSpec(
        name=request.name or default_name(short, key, None),
        architecture=reference,
        weights=label,
        seed=used_seed,
        preprocessing=prep,
        weights_paths=paths,
        build=build,
        # The user's function may read files or set weights itself: build it for real.
        skeleton=lambda: _call(fn, ref),
        probes=module_layers,
        layout_rule=module_layout_rule,
        source="module",
    )
