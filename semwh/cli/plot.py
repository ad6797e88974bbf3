"""`semwh plot rdm|mds|layers`: figures of one space or one model (PNG, PDF, SVG and CSV)."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.state import console, state
from semwh.results.report.figures import Figure
from semwh.results.report.structure import plot_layers, plot_mds, plot_rdm

app = typer.Typer(
    help="Figures of a space or a model: an RDM, a 2-D MDS, a layer x layer matrix. Each is "
    "written as PNG (300 dpi), PDF, SVG (editable text) and the CSV of its numbers.\n\n"
    "Example: semwh plot rdm glove-6b-50d --order category --out figures/",
    no_args_is_help=True,
)

ORDER_HELP = (
    "Order and group the concepts by: auto (WordNet hypernyms where known, else the concept "
    "file's 'category' column, else the id), wordnet, lexname, name, concept, or any column "
    "of the concept file."
)
OUT_HELP = "Folder for the figure's files (outside the warehouse)."
FORCE_HELP = "Replace the figure's files if they exist."


def _done(figure: Figure) -> None:
    for path in figure.paths:
        console.print(f"wrote {path}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def rdm(
    ctx: typer.Context,
    space: str = typer.Argument(..., help="The space (a layer MODEL/LAYER, words, an RDM)."),
    order: str = typer.Option("auto", "--order", help=ORDER_HELP),
    out: Path = typer.Option(Path("figures"), "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """The space's RDM, concepts ordered by an attribute.

    Entries: 1 - Pearson r of the concept vectors (an RDM space: its subjects' mean); the
    groups of the attribute are framed along the diagonal.

    Example: semwh plot rdm efficientnet_lite0/blocks.15 --order wordnet --out figures/
    """
    _done(plot_rdm(state(ctx).warehouse(), space, out, order=order, force=force))


@app.command()
def mds(
    ctx: typer.Context,
    space: str = typer.Argument(..., help="The space (a layer MODEL/LAYER, words, an RDM)."),
    order: str = typer.Option("auto", "--order", help="Colour the points by: " + ORDER_HELP),
    out: Path = typer.Option(Path("figures"), "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """A 2-D classical MDS of the space's RDM, points coloured by an attribute.

    Example: semwh plot mds glove-6b-50d --order category --out figures/
    """
    _done(plot_mds(state(ctx).warehouse(), space, out, order=order, force=force))


@app.command()
def layers(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A vision or text model with layer spaces."),
    measure: str = typer.Option("cka", "--measure", help="cka (linear CKA) or rsa."),
    out: Path = typer.Option(Path("figures"), "--out", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """The similarity of every pair of the model's layers (linear CKA or RSA).

    Computed from the stored concept vectors with semwh's own measures, over the concepts
    all the layers share.

    Example: semwh plot layers efficientnet_lite0 --measure cka --out figures/
    """
    _done(plot_layers(state(ctx).warehouse(), model, out, measure=measure, force=force))
