"""A whole study from one file: the run file (:mod:`semwh.workflow.runfile`), its stages
(:mod:`semwh.workflow.stages`) and the run that brings them up to date
(:mod:`semwh.workflow.pipeline`); the demo (:mod:`semwh.workflow.demo`) is one such run over
the public sample set (:mod:`semwh.workflow.sample_set`)."""

from semwh.workflow.pipeline import RunSummary, StageResult, run_pipeline
from semwh.workflow.runfile import RunConfig, load_config, parse_config

__all__ = [
    "RunConfig",
    "RunSummary",
    "StageResult",
    "load_config",
    "parse_config",
    "run_pipeline",
]
