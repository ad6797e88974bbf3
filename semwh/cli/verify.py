"""`semwh verify`: check vector files and recompute stored results from their records."""

from __future__ import annotations

import typer

from semwh.cli.printing import print_table
from semwh.cli.state import err_console, state


def verify(
    ctx: typer.Context,
    sweep: int | None = typer.Option(None, "--sweep", help="Every member of this sweep."),
    result: str | None = typer.Option(None, "--result", help="One result, as TEST:ID (2v2:17)."),
    every: bool = typer.Option(False, "--all", help="Every stored result."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Check each input vector file's size, rows and SHA-256, recompute stored results from
    their recorded parameters and seeds, and report each as reproduced, drifted or inputs
    changed. Exits with 1 unless every result reproduced exactly.

    Example: semwh verify --all
    """
    from semwh.runs.verify import verify as run_verify

    report = run_verify(state(ctx).warehouse(), sweep_id=sweep, result=result, every=every)
    print_table(report.table(), fmt, title="verify")
    for path, problem in sorted(report.bad_files.items()):
        err_console.print(
            f"[red]vector file {path}[/red] {problem}", highlight=False, soft_wrap=True
        )
    err_console.print(report.summary(), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
