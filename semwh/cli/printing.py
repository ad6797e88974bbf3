"""Printing query results in the formats the CLI offers."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
from rich.table import Table

from semwh.cli.state import console, err_console
from semwh.errors import ConfigError
from semwh.output import check_format, format_cell, to_csv, to_json, write_parquet


def print_table(
    table: pa.Table, fmt: str = "table", out: Path | None = None, title: str = ""
) -> None:
    """Print (or write to ``out``) an Arrow table as table, csv, json or parquet."""
    check_format(fmt)
    if fmt == "parquet":
        if out is None:
            raise ConfigError("--format parquet needs --out FILE.parquet")
        write_parquet(table, out)
        err_console.print(f"wrote {table.num_rows} rows to {out}")
        return
    if fmt in ("csv", "json"):
        text = to_csv(table) if fmt == "csv" else to_json(table) + "\n"
        if out is not None:
            out.write_text(text)
            err_console.print(f"wrote {table.num_rows} rows to {out}")
        else:
            sys.stdout.write(text)
        return
    rich_table = Table(title=title or None, show_lines=False)
    for name in table.column_names:
        rich_table.add_column(name, overflow="fold")
    for row in table.to_pylist():
        rich_table.add_row(*(format_cell(v) for v in row.values()))
    console.print(rich_table)
    err_console.print(f"{table.num_rows} rows")
