"""A declarative run: ingest -> extract -> analyze -> report from one run file.

Every stage makes an idempotent library call, so running the same file twice does the work
once: concepts, images, word vectors, spaces and RDMs already ingested, extractions already
complete and comparisons already stored are found again, not recomputed.
:mod:`semwh.workflow.runfile` describes the file and :mod:`semwh.workflow.stages` holds the
stages; here they run in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from semwh.progress import Progress, check_progress
from semwh.warehouse.layout import Warehouse
from semwh.workflow.runfile import RunConfig
from semwh.workflow.stages import (
    Outcome,
    analyze_stage,
    check_report_folder,
    concepts_stage,
    embed_stage,
    extract_stage,
    grid_stage,
    images_stage,
    peak_stage,
    rdm_stage,
    report_stage,
    setup_stage,
    space_stage,
    words_stage,
)

#: ``on_stage(stage, what)``: called as each stage starts (the CLI prints one line).
OnStage = Callable[[str, str], None]


@dataclass
class StageResult:
    """What one stage did."""

    stage: str
    what: str
    status: str  # done|unchanged
    seconds: float
    detail: str = ""


@dataclass
class RunSummary:
    """Everything a run did, stage by stage."""

    stages: list[StageResult] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    word_spaces: list[str] = field(default_factory=list)
    spaces: list[str] = field(default_factory=list)
    rdms: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    text_models: list[str] = field(default_factory=list)


def _stage(
    summary: RunSummary,
    on_stage: OnStage | None,
    stage: str,
    what: str,
    run: Callable[..., Outcome],
    *args: Any,
) -> Any:
    """Announce one stage, run it, record what it did and how long it took; return its value."""
    if on_stage is not None:
        on_stage(stage, what)
    start = time.perf_counter()
    outcome = run(*args)
    seconds = round(time.perf_counter() - start, 2)
    summary.stages.append(StageResult(stage, what, outcome.status, seconds, outcome.detail))
    return outcome.value


def run_pipeline(
    wh: Warehouse,
    config: RunConfig,
    *,
    progress: Progress | None = None,
    on_stage: OnStage | None = None,
    force: bool = False,
) -> RunSummary:
    """Run (or bring up to date) everything ``config`` declares, stage by stage.

    Args:
        wh: The warehouse (created and migrated when missing).
        config: The run configuration.
        progress: Told how far the long stages have got (see :mod:`semwh.progress`).
        on_stage: Called with (stage, what) as each stage starts.
        force: Let the report replace its files in a folder that holds other files.

    Returns:
        What each stage did and the report's path.

    Raises:
        OutputError: The run file's report folder breaks the rule of
            :func:`semwh.workflow.stages.check_report_folder` (checked before any work).
    """
    check_progress(progress)
    if config.report.enabled:
        check_report_folder(wh, config, force=force)
    start = time.perf_counter()
    summary = RunSummary()
    stage = partial(_stage, summary, on_stage)
    stage("setup", str(wh.root), setup_stage, wh, config)
    if config.concepts is not None:
        what = str(config.concepts.file or "imagenet1k")
        stage("concepts", what, concepts_stage, wh, config.concepts)
    stage("images", str(config.images.source), images_stage, wh, config.images, progress)
    for words in config.words:
        summary.word_spaces.append(stage("words", words.name, words_stage, wh, words))
    for space in config.spaces:
        summary.spaces.append(stage("space", space.name, space_stage, wh, space, config.source))
    for rdm in config.rdms:
        summary.rdms.append(stage("rdm", rdm.name, rdm_stage, wh, rdm, config.source))
    for text in config.text_models:
        name = text.name or text.source
        summary.text_models.append(stage("embed", name, embed_stage, wh, text))
    for model in config.models:
        names = stage("extract", model.name, extract_stage, wh, config, model, progress)
        summary.models.extend(names)
    if summary.word_spaces:
        pairs = f"{len(summary.models)} models x {len(summary.word_spaces)} word spaces"
        stage(
            "analyze",
            pairs,
            analyze_stage,
            wh,
            config,
            summary.models,
            summary.word_spaces,
            progress,
        )
    # The declared spaces and RDMs: a sweep of their own (its own FDR family), without
    # recovery, which reads word vectors.
    targets = [s.name for s in config.spaces if s.sweep] + [r.name for r in config.rdms if r.sweep]
    if targets:
        pairs = f"{len(summary.models)} models x {len(targets)} spaces and RDMs"
        stage(
            "analyze", pairs, analyze_stage, wh, config, summary.models, targets, progress,
            False, True,
        )  # fmt: skip
    for grid in config.grids:
        stage("grid", f"{grid.a} x {grid.b}", grid_stage, wh, config, grid)
    for peak in config.peaks:
        stage("peak", f"{peak.model} vs {peak.target}", peak_stage, wh, config, peak)
    if config.report.enabled:
        summary.report = stage("report", str(config.report.out), report_stage, wh, config, force)
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary
