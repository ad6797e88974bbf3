"""`semwh diff OTHER_WAREHOUSE`: this warehouse's results against another warehouse's."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import print_table
from semwh.cli.state import err_console, state


def diff(
    ctx: typer.Context,
    other_warehouse: Path = typer.Argument(..., help="The other warehouse folder (read only)."),
    tolerance: float = typer.Option(
        0.0, "--tolerance", help="Largest absolute difference still counted as agreeing."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Compare every result of this warehouse with the other warehouse's result of the same
    spaces, measure, options, concept set and level: identical, within tolerance or
    different (by how much, statistic and p), and whether the inputs' content hashes, the
    recorded semwh and library versions or the devices differ; results of one warehouse only
    are listed too. Exits with 1 when a result differs beyond the tolerance or is in one
    warehouse only. (`semwh analyze diff` is another thing: the difference of two results.)

    Example: semwh --warehouse rerun-h100 diff ../original --tolerance 1e-6
    """
    from semwh.runs.warehouse_diff import diff_warehouses

    report = diff_warehouses(state(ctx).warehouse(), other_warehouse, tolerance=tolerance)
    # A terminal table shows what differs; csv and json carry every column.
    print_table(report.table(compact=fmt == "table"), fmt, title="diff")
    err_console.print(report.summary(), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
