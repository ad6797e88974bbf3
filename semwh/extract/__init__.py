"""Extraction: run a vision model over the warehouse's images and store pooled activations.

``run_extraction`` is the one entry point, given an ``ExtractionOptions`` (``options``);
``models`` builds a model from its reference through the registry of model sources
(``sources``, one file per source on the interface of ``spec``; ``catalog`` is what
``semwh models`` shows), ``layouts`` the layout of each probed
output, ``hooks`` the pooling hooks, ``batches`` the batch loop and ``job`` the resumable,
sharded job (sized by ``plan``, its registry rows in ``rows``, written by ``shards``,
averaged into spaces by ``finalize``).
"""

from semwh.extract.batches import ProbedModel, extract_batch
from semwh.extract.hooks import Pooling, parse_pooling
from semwh.extract.job import ExtractionSummary, finished_extraction, run_extraction
from semwh.extract.networks import LoadedModel, available_models, load_model, resolve_layers
from semwh.extract.options import ExtractionOptions
from semwh.extract.plan import ExtractionPlan, LayerPlan
from semwh.extract.preprocess import Preprocessing

__all__ = [
    "ExtractionOptions",
    "ExtractionPlan",
    "ExtractionSummary",
    "LayerPlan",
    "LoadedModel",
    "Pooling",
    "Preprocessing",
    "ProbedModel",
    "available_models",
    "extract_batch",
    "finished_extraction",
    "load_model",
    "parse_pooling",
    "resolve_layers",
    "run_extraction",
]
