"""The registry itself: registered measures by name, built-ins and plugins loaded once."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from semwh.errors import ConfigError
from semwh.measures.base import FEATURES, SIMILARITIES, Measure, Options

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


#: Names that are not measures: analyses of their own in ``verify``, ``diff`` and families.
RESERVED = ("recovery", "diff", "sweep", "grid", "peak")
#: Plugins that could not be registered, by entry-point name: why (``semwh analyze measures``
#: lists them; using one raises the reason).
_BROKEN: dict[str, str] = {}


def register(measure: type[Measure] | Measure) -> Any:
    """Add a measure (a subclass, instantiated, or an instance) to the registry.

    Usable as a class decorator. The declarations are checked: a name of 1-40 letters,
    digits, ``_`` or ``-`` that no other measure and no other analysis (recovery, diff...)
    has, a label, inputs, direction ``greater`` and a positive integer version. A measure
    defined outside semwh compares feature vectors: measures of similarity matrices (against
    RDM targets with subjects) are the built-in RSA and 2 vs 2.

    Raises:
        ConfigError: A declaration that breaks these rules, naming the class.
    """
    instance = measure() if isinstance(measure, type) else measure
    where = f"{type(instance).__module__}.{type(instance).__name__}"
    name = getattr(instance, "name", None)
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 40
        or not all(c.isalnum() or c in "_-" for c in name)
    ):
        raise ConfigError(
            f"measure {where}: name must be 1-40 letters, digits, _ or -, got {name!r}"
        )
    if name in RESERVED:
        raise ConfigError(f"measure {where}: {name!r} names another analysis; rename the measure")
    label = getattr(instance, "label", None)
    if not isinstance(label, str) or not label.strip():
        raise ConfigError(f"measure {where} ({name}): declare a label (text for figures)")
    if instance.inputs not in (FEATURES, SIMILARITIES):
        raise ConfigError(
            f"measure {where} ({name}): inputs must be {FEATURES!r} or {SIMILARITIES!r}, "
            f"got {instance.inputs!r}"
        )
    builtin = type(instance).__module__.startswith("semwh.measures.")
    if instance.inputs == SIMILARITIES and not builtin:
        raise ConfigError(
            f"measure {where} ({name}): measures from other packages compare feature vectors "
            f"(inputs = {FEATURES!r}); RSA and 2 vs 2 are the measures of similarity matrices"
        )
    if instance.direction != "greater":
        raise ConfigError(
            f"measure {where} ({name}): direction must be 'greater' (larger = more similar; "
            f"negate a distance), got {instance.direction!r}"
        )
    version = instance.version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"measure {where} ({name}): version must be an integer of 1 or more")
    present = _REGISTRY.get(name)
    if present is not None and type(present) is not type(instance):
        raise ConfigError(
            f"measure {name!r} is registered twice ({type(present).__module__}."
            f"{type(present).__name__} and {where}): rename one"
        )
    _REGISTRY[name] = instance
    return measure


def _load() -> None:
    """Import the built-in measures and the installed plugins once.

    A plugin that cannot be registered (it fails to import, is not a Measure, breaks the
    rules of :func:`register`) is set aside with its reason: the other measures keep
    working, ``semwh analyze measures`` lists it, and asking for it raises the reason.
    """
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
    _BROKEN.clear()
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _REGISTRY and type(_REGISTRY[entry.name]).__module__.startswith(
            "semwh.measures."
        ):
            _BROKEN[entry.name] = (
                f"measure plugin {entry.name!r} ({entry.value}) takes the name of a built-in "
                "measure; rename it"
            )
            continue
        try:
            loaded = entry.load()
            if not (
                isinstance(loaded, type)
                and issubclass(loaded, Measure)
                or isinstance(loaded, Measure)
            ):
                raise ConfigError("it is not a semwh Measure subclass or instance")
            instance = loaded() if isinstance(loaded, type) else loaded
            if getattr(instance, "name", None) != entry.name:
                raise ConfigError(
                    f"its entry point is named {entry.name!r} but the measure "
                    f"{getattr(instance, 'name', None)!r}: give both one name"
                )
            register(instance)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not a traceback
            _BROKEN[entry.name] = (
                f"measure plugin {entry.name!r} ({entry.value}) cannot be used: "
                f"{type(exc).__name__}: {exc}; fix or uninstall the package that provides it"
            )


def broken() -> dict[str, str]:
    """Plugins set aside, by entry-point name, with why."""
    _load()
    return dict(_BROKEN)


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
        if name in _BROKEN:
            raise ConfigError(_BROKEN[name])
        raise ConfigError(
            f"unknown measure {name!r} (choose {', '.join(names())}); if results of "
            f"{name!r} are stored, the package that provides it is not installed here: "
            "they stay queryable with semwh sql"
        )
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
    for name, reason in broken().items():
        rows.append(
            {
                "measure": name,
                "label": None,
                "inputs": None,
                "chance": None,
                "version": None,
                "options": None,
                "module": None,
                "summary": f"cannot be loaded: {reason}",
            }
        )
    return rows
