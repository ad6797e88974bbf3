"""`semwh report`: figures and a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.state import console, state
from semwh.results.report import build_report


def report(
    ctx: typer.Context,
    out: Path = typer.Argument(Path("semwh-report"), help="Output folder."),
    alpha: float = typer.Option(0.05, "--alpha", help="FDR level for significance marks."),
    word_space: str | None = typer.Option(None, "--word-space", help="Only this word space."),
    measure: list[str] = typer.Option(
        [],
        "--measure",
        help="Also draw this measure's curves (any registered measure: semwh analyze measures); "
        "repeatable.",
    ),
    heatmap: list[str] = typer.Option(
        [],
        "--heatmap",
        help="Also draw SPACE's similarity matrix in WordNet order (SPACE or SPACE:METRIC, "
        "metric pearson, spearman or cosine); repeatable.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into OUT even if it holds files (replacing the report's)."
    ),
) -> None:
    """Write 2 vs 2, RSA and recovery figures (PNG, SVG) and report.html into OUT.

    OUT must be outside the warehouse; a folder that already holds files needs --force.

    Example: semwh report report/ --measure cka --heatmap efficientnet_lite0/blocks.15:spearman
    """
    wh = state(ctx).warehouse()
    info = build_report(
        wh, out, alpha=alpha, word_space=word_space, force=force, measures=measure, heatmaps=heatmap
    )
    console.print(f"wrote {info.html} ({len(info.figures)} figure files)")
