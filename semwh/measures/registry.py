"""The registry itself: registered measures by name, built-ins and plugins loaded once."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from semwh.errors import ConfigError
from semwh.measures.base import FEATURES, SIMILARITIES, Measure, Options, check_choice

ENTRY_POINT_GROUP = "semwh.measures"
#: The built-in measures' modules, in the order they are listed; each defines one
#: :class:`Measure` subclass, registered when the registry is first read.
BUILTIN = (
    "semwh.measures.two_vs_two",
    "semwh.measures.rsa",
    "semwh.measures.cka",
    "semwh.measures.knn",
    "semwh.measures.reg2v2",
)

_REGISTRY: dict[str, Measure] = {}
_LOADED = False


def register(measure: type[Measure] | Measure) -> Any:
    """Add a measure (a subclass, instantiated, or an instance) to the registry.

    Usable as a class decorator. Registering a name twice with different classes is refused,
    so a plugin cannot silently replace a built-in measure.

    Raises:
        ConfigError: A name already registered, or a name that is not a short identifier.
    """
    instance = measure() if isinstance(measure, type) else measure
    name = getattr(instance, "name", None)
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 40
        or not all(c.isalnum() or c in "_-" for c in name)
    ):
        raise ConfigError(
            f"measure {type(instance).__name__}: name must be 1-40 letters, digits, _ or -, "
            f"got {name!r}"
        )
    present = _REGISTRY.get(name)
    if present is not None and type(present) is not type(instance):
        raise ConfigError(
            f"measure {name!r} is registered twice ({type(present).__module__}."
            f"{type(present).__name__} and {type(instance).__module__}."
            f"{type(instance).__name__}): rename one"
        )
    _REGISTRY[name] = instance
    return measure


def _load() -> None:
    """Import the built-in measures and the installed plugins once."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in BUILTIN:
        for found in vars(importlib.import_module(module)).values():
            if (
                isinstance(found, type)
                and issubclass(found, Measure)
                and found.__module__ == module
                and "name" in vars(found)
            ):
                register(found)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
            _LOADED = False
            raise ConfigError(
                f"measure plugin {entry.name!r} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall the package that provides it"
            ) from exc
        if isinstance(loaded, type) and issubclass(loaded, Measure) or isinstance(loaded, Measure):
            register(loaded)
        elif not any(isinstance(m, Measure) for m in _REGISTRY.values() if m.name == entry.name):
            _LOADED = False
            raise ConfigError(
                f"measure plugin {entry.name!r} ({entry.value}) is not a semwh Measure "
                "subclass or instance"
            )


def unregister(name: str) -> None:
    """Remove a measure from the registry of this process (a plugin being uninstalled)."""
    _REGISTRY.pop(name, None)


def reload() -> None:
    """Read the installed plugins again (after installing one in a running process)."""
    global _LOADED
    _LOADED = False
    _load()


def get(name: str) -> Measure:
    """The measure called ``name``.

    Raises:
        ConfigError: An unknown measure, naming the registered ones.
    """
    _load()
    found = _REGISTRY.get(name)
    if found is None:
        check_choice(name, names(), "measure")
    assert found is not None
    return found


def names() -> tuple[str, ...]:
    """Every registered measure's name: built-ins first, then plugins in load order."""
    _load()
    return tuple(_REGISTRY)


def all_measures() -> tuple[Measure, ...]:
    _load()
    return tuple(_REGISTRY.values())


def similarity_measures() -> tuple[str, ...]:
    """Measures of similarity matrices (they take RDM targets with subjects)."""
    return tuple(m.name for m in all_measures() if m.inputs == SIMILARITIES)


def feature_measures() -> tuple[str, ...]:
    """Measures of feature vectors."""
    return tuple(m.name for m in all_measures() if m.inputs == FEATURES)


def setting_names() -> tuple[str, ...]:
    """The names of every setting some measure takes from shared settings."""
    seen: dict[str, None] = {}
    for measure in all_measures():
        seen.update(dict.fromkeys(measure.settings_map()))
    return tuple(seen)


def options_for(
    test: str,
    *,
    permutations: int = 0,
    seed: int | None = None,
    bootstrap: int = 0,
    device: str = "cpu",
    **settings: Any,
) -> Options:
    """Validated options of ``test`` from settings shared by several measures (a sweep's, a
    grid's): each measure takes the settings it names and ignores the others.

    Raises:
        ConfigError: An unknown measure, setting or option value.
    """
    measure = get(test)
    unknown = sorted(set(settings) - set(setting_names()))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)} (settings: {', '.join(setting_names())})"
        )
    return measure.options_from(
        settings, permutations=permutations, seed=seed, bootstrap=bootstrap, device=device
    )


def analysis_version(test: str, target: str | None = None) -> int:
    """The current algorithm version of a measure, recovery or difference (``target``: how
    space B is compared; ``subjects:...`` for an RDM target)."""
    from semwh.analyze.versions import analysis_version as other_version

    _load()
    measure = _REGISTRY.get(test)
    if measure is None:
        return other_version(test, target)
    return measure.version_for(target)


def describe() -> list[Mapping[str, Any]]:
    """One row per registered measure (``semwh analyze measures``)."""
    rows: list[Mapping[str, Any]] = []
    for m in all_measures():
        rows.append(
            {
                "measure": m.name,
                "label": m.label,
                "inputs": m.inputs,
                "chance": m.chance,
                "version": m.version,
                "options": ", ".join(f"{k}={v}" for k, v in m.defaults().items()),
                "module": type(m).__module__,
                "summary": m.summary,
            }
        )
    return rows
