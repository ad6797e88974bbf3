"""A declarative run: ingest -> extract -> analyze -> report from one run file.

Every stage calls an idempotent library function, so running the same file twice does the work
once: images and word vectors already ingested, extractions already complete and comparisons
already stored are found again, not recomputed. :mod:`semwh.workflow.runfile` describes the
file; :mod:`semwh.workflow.stages` holds the stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from semwh.warehouse.layout import Warehouse
from semwh.workflow.runfile import RunConfig
from semwh.workflow.stages import (
    analyze_stage,
    embed_stage,
    extract_stage,
    grid_stage,
    images_stage,
    peak_stage,
    report_stage,
    setup_stage,
    words_stage,
)

Progress = Callable[[str], None]


@dataclass
class StageResult:
    """What one stage did."""

    stage: str
    what: str
    status: str  # done|unchanged|skipped
    seconds: float
    detail: str = ""


@dataclass
class RunSummary:
    """Everything a run did, stage by stage."""

    stages: list[StageResult] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    word_spaces: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    text_models: list[str] = field(default_factory=list)


def _timed(
    summary: RunSummary, stage: str, what: str, progress: Progress | None, fn: Callable[[], Any]
) -> Any:
    if progress is not None:
        progress(f"{stage}: {what}")
    start = time.perf_counter()
    status, detail, value = fn()
    summary.stages.append(
        StageResult(stage, what, status, round(time.perf_counter() - start, 2), detail)
    )
    return value


def run_pipeline(
    wh: Warehouse,
    config: RunConfig,
    *,
    progress: Progress | None = None,
    show_bars: bool = False,
) -> RunSummary:
    """Run (or bring up to date) everything ``config`` declares, stage by stage.

    Args:
        wh: The warehouse (created and migrated when missing).
        config: The run configuration.
        progress: Called with one line per stage as it starts (the CLI prints them).
        show_bars: Let stages show rich progress bars on stderr.

    Returns:
        What each stage did and the report's path.
    """
    start = time.perf_counter()
    summary = RunSummary()
    _timed(summary, "setup", str(wh.root), progress, lambda: setup_stage(wh, config))
    _timed(
        summary,
        "images",
        str(config.images.folder),
        progress,
        lambda: images_stage(wh, config.images),
    )
    for words in config.words:
        space = _timed(summary, "words", words.name, progress, partial(words_stage, wh, words))
        summary.word_spaces.append(space)
    for text in config.text_models:
        name = _timed(
            summary, "embed", text.name or text.source, progress, partial(embed_stage, wh, text)
        )
        summary.text_models.append(name)
    for model in config.models:
        names = _timed(
            summary,
            "extract",
            model.name,
            progress,
            partial(extract_stage, wh, config, model, show_bars),
        )
        summary.models.extend(names)
    _timed(
        summary,
        "analyze",
        f"{len(summary.models)} models x {len(summary.word_spaces)} word spaces",
        progress,
        lambda: analyze_stage(wh, config, summary.models, summary.word_spaces, show_bars),
    )
    for spec in config.grids:
        _timed(
            summary,
            "grid",
            f"{spec.a} x {spec.b}",
            progress,
            partial(grid_stage, wh, config, spec),
        )
    for peak in config.peaks:
        _timed(
            summary,
            "peak",
            f"{peak.model} vs {peak.target}",
            progress,
            partial(peak_stage, wh, config, peak),
        )
    if config.report.enabled:
        summary.report = _timed(
            summary,
            "report",
            str(config.report.out),
            progress,
            lambda: report_stage(wh, config),
        )
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
