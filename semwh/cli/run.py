"""`semwh run`: a declarative run from a TOML file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from semwh.cli.printing import bars
from semwh.cli.state import console, err_console, state

if TYPE_CHECKING:  # the pipeline is imported when `semwh run` runs, not for `semwh --help`
    from semwh.workflow.pipeline import RunSummary


def print_stage(stage: str, what: str) -> None:
    """One line on stderr as a stage starts."""
    err_console.print(f"{stage}: {what}", markup=False)


def print_summary(summary: RunSummary) -> None:
    """The stages of a run as a table on stderr."""
    table = Table("stage", "what", "status", "seconds", "detail", title="run")
    for s in summary.stages:
        table.add_row(s.stage, s.what, s.status, f"{s.seconds:.1f}", s.detail)
    err_console.print(table)
    err_console.print(f"total {summary.seconds:.1f} s")


def run(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Run configuration (TOML)."),
    force: bool = typer.Option(
        False, "--force", help="Let the report replace its files in a folder holding others."
    ),
) -> None:
    """Run ingest -> extract -> analyze -> report as CONFIG declares; finished work is skipped.

    Example: semwh --warehouse ./wh run examples/paper.toml
    """
    from semwh.workflow.pipeline import run_pipeline
    from semwh.workflow.runfile import load_config

    wh = state(ctx).new_warehouse()
    with bars() as progress:
        summary = run_pipeline(
            wh, load_config(config), progress=progress, on_stage=print_stage, force=force
        )
    print_summary(summary)
    if summary.report is not None:
        console.print(f"report: {summary.report}")
