"""`semwh sql`: read-only SQL over the warehouse."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import print_table
from semwh.cli.state import state
from semwh.warehouse.readonly import run_sql


def sql(
    ctx: typer.Context,
    statement: str = typer.Argument(..., help="One SQL statement (read-only)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file."),
) -> None:
    """Run read-only SQL over registry tables, results and the `vectors` view.

    Example: semwh sql "SELECT model, layer, accuracy_2v2 FROM layer_curves" --format csv
    """
    wh = state(ctx).warehouse()
    print_table(run_sql(wh, statement).table, fmt, out)
