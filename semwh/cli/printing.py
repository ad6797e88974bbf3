"""Printing query results in the formats the CLI offers."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
from rich.markup import escape
from rich.progress import ProgressColumn, Task, TaskID
from rich.table import Table
from rich.text import Text

from semwh.cli.state import console, err_console
from semwh.errors import ConfigError
from semwh.progress import Progress
from semwh.results.output import (
    STREAM_ROWS,
    check_format,
    csv_lines,
    format_cell,
    json_chunks,
    write_batches,
)


def print_table(
    table: pa.Table,
    fmt: str = "table",
    out: Path | None = None,
    title: str = "",
    *,
    protected: Sequence[Path] = (),
    force: bool = False,
) -> None:
    """Print an Arrow table as table, csv or json, or write it to ``out`` (not in ``protected``)."""
    print_stream(
        table.schema,
        table.to_batches(STREAM_ROWS),
        fmt,
        out,
        title,
        protected=protected,
        force=force,
        rows=table,
    )


def print_stream(
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    fmt: str = "table",
    out: Path | None = None,
    title: str = "",
    *,
    protected: Sequence[Path] = (),
    force: bool = False,
    rows: pa.Table | None = None,
) -> None:
    """Print rows streamed in record batches (:func:`print_table` for a whole table): CSV,
    JSON and Parquet are written batch by batch (stdout or ``out``); only the table format
    collects the rows (``rows``: the table they come from, when there is one)."""
    check_format(fmt)
    if out is not None:
        count = write_batches(schema, batches, fmt, out, protected, force=force)
        err_console.print(f"wrote {count} rows to {out}", soft_wrap=True)
        return
    if fmt == "parquet":
        raise ConfigError("--format parquet needs --out FILE.parquet")
    if fmt == "csv":
        sys.stdout.writelines(csv_lines(batches, schema.names))
    elif fmt == "json":
        sys.stdout.writelines(json_chunks(batches))
        sys.stdout.write("\n")
    else:
        _render(rows if rows is not None else pa.Table.from_batches(list(batches), schema), title)


def _render(table: pa.Table, title: str) -> None:
    """A rich table on stdout (cells are text, never markup), its row count on stderr."""
    rich_table = Table(title=title or None, show_lines=False)
    for name in table.column_names:
        rich_table.add_column(name, overflow="fold")
    for row in table.to_pylist():
        rich_table.add_row(*(escape(format_cell(v)) for v in row.values()))
    console.print(rich_table)
    err_console.print(f"{table.num_rows} rows")


@contextmanager
def bars(*, transfer: bool = False) -> Iterator[Progress]:
    """A :data:`semwh.progress.Progress` callable that draws one rich bar per task on stderr.

    ``transfer``: the units are bytes (size and speed columns instead of counts and a rate).
    Nothing is drawn until the first report (a command that fails or finds its work done
    prints no empty bar); finished bars stay on a terminal and leave no trace in a log. A
    report that goes back to fewer units done (the same work run again) starts a new bar.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as RichProgress

    counts = (MofNCompleteColumn(), TaskProgressColumn(), _RateColumn(), TimeRemainingColumn())
    sizes = (DownloadColumn(), TransferSpeedColumn())
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *(sizes if transfer else counts),
    )
    tasks: dict[str, tuple[TaskID, int]] = {}
    lock = threading.Lock()
    with ExitStack() as stack:
        shown: list[RichProgress] = []

        def update(what: str, done: int, total: int | None) -> None:
            with lock:
                if not shown:
                    live = RichProgress(
                        *columns, console=err_console, transient=not err_console.is_terminal
                    )
                    shown.append(stack.enter_context(live))
                rich_bars = shown[0]
                task, last = tasks.get(what, (None, 0))
                if task is None or done < last:
                    task = rich_bars.add_task(what, total=total)
                tasks[what] = (task, done)
                rich_bars.update(task, completed=done, total=total)

        yield update


class _RateColumn(ProgressColumn):
    """Units per second (images/s, comparisons/s) once a bar has a speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")
