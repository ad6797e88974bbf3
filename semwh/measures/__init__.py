"""The registry of measures: every path that compares two spaces reads it.

Built-in measures live one per module in this package (:mod:`.rsa`, :mod:`.two_vs_two`,
:mod:`.cka`, :mod:`.knn`, :mod:`.reg2v2`); outside packages add theirs through the entry-point
group ``semwh.measures`` (each entry point names a :class:`Measure` subclass or instance).
See docs/extending.md for a complete worked example.
"""

from __future__ import annotations

from semwh.measures.base import (
    FEATURES,
    SIMILARITIES,
    Measure,
    Options,
    check_device,
    check_seed,
)
from semwh.measures.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    all_measures,
    analysis_version,
    broken,
    describe,
    get,
    names,
    options_for,
    register,
    reload,
    setting_names,
    similarity_measures,
    unregister,
)

__all__ = [
    "FEATURES",
    "SIMILARITIES",
    "Measure",
    "Options",
    "check_device",
    "check_seed",
    "ENTRY_POINT_GROUP",
    "BUILTIN",
    "all_measures",
    "analysis_version",
    "broken",
    "describe",
    "get",
    "names",
    "options_for",
    "register",
    "reload",
    "setting_names",
    "similarity_measures",
    "unregister",
]
