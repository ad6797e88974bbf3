"""`semwh sql`: one read statement over the warehouse, in the sandbox."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import print_stream
from semwh.cli.state import state

ALLOW_READ_HELP = (
    "Folder whose files the SQL may read (read_csv, read_parquet …); repeatable. "
    "Also SEMWH_ALLOW_READ (folders separated by the path separator)."
)
FORCE_HELP = "Replace the --out file if it exists."
TIMEOUT_HELP = (
    "Seconds the statement may run before it is stopped (0: no limit). "
    "Default: SEMWH_SQL_TIMEOUT, else 600."
)


def sql(
    ctx: typer.Context,
    statement: str = typer.Argument(..., help="One read statement (SELECT, WITH, DESCRIBE …)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file."),
    allow_read: list[Path] = typer.Option(None, "--allow-read", help=ALLOW_READ_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    timeout: float | None = typer.Option(None, "--timeout", help=TIMEOUT_HELP),
) -> None:
    """Run one read-only statement over registry tables, results and the `vectors` view.

    The statement runs in a sandbox: no ATTACH, COPY, EXPORT, INSTALL, LOAD, SET or PRAGMA,
    and files are read only under the vectors root and --allow-read folders. It stops at
    its time limit (--timeout) or at the first Ctrl-C; CSV, JSON and Parquet stream.

    Example: semwh sql "SELECT model, layer, accuracy_2v2 FROM layer_curves" --format csv
    """
    from semwh.warehouse.readonly import stream_sql

    lab = state(ctx).api(allow_read)
    protected = lab.warehouse.protected_paths
    with stream_sql(lab.warehouse, statement, allow_read=lab.allow_read, timeout=timeout) as rows:
        print_stream(*rows, fmt, out, protected=protected, force=force)
