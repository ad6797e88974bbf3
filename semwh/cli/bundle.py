"""`semwh bundle`: the chosen results, tables, figures and their provenance in one folder."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.state import console, state


def bundle(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="New folder for the bundle (outside the warehouse)."),
    sweep: list[int] = typer.Option(
        [], "--sweep", help="Every member of this sweep, with its FDR; repeatable."
    ),
    result: list[str] = typer.Option(
        [], "--result", help="One result, TEST:ID (2v2:17) or a results id; repeatable."
    ),
    figures: bool = typer.Option(
        True, "--figures/--no-figures", help="Draw the report's figures into the bundle."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a previous bundle at OUT (and nothing else)."
    ),
) -> None:
    """Write the chosen results as CSV, Parquet and LaTeX tables, the figures, the sweep and
    analysis definitions, the inputs' content hashes, library versions, a README and a
    MANIFEST.sha256 into the new folder OUT.

    Without --sweep or --result: the newest complete sweep (every stored result when the
    warehouse has none). OUT is written under a hidden name beside it and renamed into place
    when complete. Check it later with `semwh verify --bundle OUT`.

    Example: semwh bundle paper-bundle --sweep 3
    """
    from semwh.results.bundle import MANIFEST, build_bundle

    info = build_bundle(
        state(ctx).warehouse(),
        out,
        sweep_ids=sweep,
        results=result,
        figures=figures,
        force=force,
    )
    console.print(
        f"wrote {info.folder}: {info.n_results} result(s) ({info.selection}), "
        f"{len(info.files)} files; {info.figures_note}; {MANIFEST} SHA-256 "
        f"{info.manifest_sha256} (quote it with the bundle: it seals every file)",
        highlight=False,
        soft_wrap=True,
    )
