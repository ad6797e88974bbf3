"""`semwh sql`: one read statement over the warehouse, in the sandbox."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import print_table
from semwh.cli.state import state

ALLOW_READ_HELP = (
    "Folder whose files the SQL may read (read_csv, read_parquet …); repeatable. "
    "Also SEMWH_ALLOW_READ (folders separated by the path separator)."
)
FORCE_HELP = "Replace the --out file if it exists."


def sql(
    ctx: typer.Context,
    statement: str = typer.Argument(..., help="One read statement (SELECT, WITH, DESCRIBE …)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file."),
    allow_read: list[Path] = typer.Option(None, "--allow-read", help=ALLOW_READ_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Run one read-only statement over registry tables, results and the `vectors` view.

    The statement runs in a sandbox: no ATTACH, COPY, EXPORT, INSTALL, LOAD, SET or PRAGMA,
    and files are read only under the vectors root and --allow-read folders.

    Example: semwh sql "SELECT model, layer, accuracy_2v2 FROM layer_curves" --format csv
    """
    lab = state(ctx).api(allow_read)
    result = lab.sql(statement)
    print_table(result.table, fmt, out, protected=lab.warehouse.protected_paths, force=force)
