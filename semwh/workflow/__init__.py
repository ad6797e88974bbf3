"""A whole study from one file: the run file (:mod:`semwh.workflow.runfile`), its stages
(:mod:`semwh.workflow.stages`) and the run that brings them up to date
(:mod:`semwh.workflow.pipeline`); the demo (:mod:`semwh.workflow.demo`) is one such run over
the public sample set (:mod:`semwh.workflow.sample_set`)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Resolved on first use, so that importing one module of the package (the CLI reads the demo's
# defaults at start-up) does not import every stage's dependencies.
_EXPORTS = {
    "RunSummary": "semwh.workflow.pipeline",
    "StageResult": "semwh.workflow.pipeline",
    "run_pipeline": "semwh.workflow.pipeline",
    "RunConfig": "semwh.workflow.runfile",
    "load_config": "semwh.workflow.runfile",
    "parse_config": "semwh.workflow.runfile",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'semwh.workflow' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


__all__ = [
    "RunConfig",
    "RunSummary",
    "StageResult",
    "load_config",
    "parse_config",
    "run_pipeline",
]
