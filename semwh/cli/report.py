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
    rdm: list[str] = typer.Option(
        [], "--rdm", help="Also draw SPACE's RDM, concepts ordered by --order; repeatable."
    ),
    mds: list[str] = typer.Option(
        [], "--mds", help="Also draw a 2-D MDS of SPACE, coloured by --order; repeatable."
    ),
    layers: list[str] = typer.Option(
        [],
        "--layers",
        help="Also draw MODEL's layer x layer matrix (--layer-measure); repeatable.",
    ),
    order: str = typer.Option(
        "auto",
        "--order",
        help="Order of the RDMs' and MDS plots' concepts: auto (WordNet hypernyms where "
        "known, else a 'category' column, else the id), wordnet, lexname, name, concept or a "
        "column of the concept file.",
    ),
    layer_measure: str = typer.Option(
        "cka", "--layer-measure", help="Measure of the layer x layer matrices: cka or rsa."
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into OUT even if it holds files (replacing the report's)."
    ),
) -> None:
    """Write 2 vs 2, RSA and recovery figures and report.html into OUT.

    Each figure is written as PNG (300 dpi), PDF, SVG (editable text) and the CSV of its
    numbers. OUT must be outside the warehouse; a folder that already holds files needs --force.

    Example: semwh report report/ --measure cka --rdm glove-6b-50d --layers efficientnet_lite0
    """
    wh = state(ctx).warehouse()
    info = build_report(
        wh,
        out,
        alpha=alpha,
        word_space=word_space,
        force=force,
        measures=measure,
        heatmaps=heatmap,
        rdms=rdm,
        mds=mds,
        layer_matrices=layers,
        order=order,
        layer_measure=layer_measure,
    )
    console.print(f"wrote {info.html} ({len(info.figures)} figure files)")
