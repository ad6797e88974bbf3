"""`semwh query`: run a named query from queries/ with bound parameters."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import print_stream, print_table
from semwh.cli.sql import ALLOW_READ_HELP, FORCE_HELP, TIMEOUT_HELP
from semwh.cli.state import state
from semwh.errors import ConfigError
from semwh.results.named import parse_assignments, query_catalogue, stream_query


def query(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Query name (see --list)."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Parameter as key=value."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write to this file."),
    list_: bool = typer.Option(False, "--list", "-l", help="List the named queries."),
    allow_read: list[Path] = typer.Option(None, "--allow-read", help=ALLOW_READ_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    timeout: float | None = typer.Option(None, "--timeout", help=TIMEOUT_HELP),
) -> None:
    """Run a named query (a SQL file of queries/) read-only, parameters bound.

    --list prints the named queries in --format (or writes them to --out).

    Named queries run in the sandbox of `semwh sql`: the lab-data joins read their file only
    with --allow-read on its folder.

    Example: semwh query external_join_csv -p path=lab/ratings.csv --allow-read lab
    """
    if list_:
        protected = [state(ctx).settings.warehouse.resolve()]
        print_table(query_catalogue(), fmt, out, "named queries", protected=protected, force=force)
        return
    if not name:
        raise ConfigError("give a query name, or --list to see them")
    lab = state(ctx).api(allow_read)
    values = parse_assignments(param)
    protected = lab.warehouse.protected_paths
    wh, allowed = lab.warehouse, lab.allow_read
    with stream_query(wh, name, values, allow_read=allowed, timeout=timeout) as rows:
        print_stream(*rows, fmt, out, title=name, protected=protected, force=force)
