"""`semwh export`: a table or view to Parquet or CSV."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.state import err_console, state
from semwh.results.named import export_table


def export(
    ctx: typer.Context,
    table: str = typer.Argument(..., help="Table or view name (e.g. results_2v2, vectors)."),
    out: Path = typer.Argument(..., help="Output file: .parquet or .csv."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Write a table or view of the warehouse to Parquet or CSV (chosen by the extension).

    OUT is written whole or not at all, never inside the warehouse, and an existing file only
    with --force.

    Example: semwh export layer_curves curves.parquet
    """
    info = export_table(state(ctx).warehouse(), table, out, force=force)
    err_console.print(f"wrote {info.n_rows} rows of {info.table} to {info.path} ({info.format})")
