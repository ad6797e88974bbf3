"""`semwh verify`: check vector files and recompute stored results from their records."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from semwh.cli.printing import print_table
from semwh.cli.state import err_console, state


def verify(
    ctx: typer.Context,
    sweep: int | None = typer.Option(None, "--sweep", help="Every member of this sweep."),
    result: str | None = typer.Option(None, "--result", help="One result, as TEST:ID (2v2:17)."),
    every: bool = typer.Option(
        False, "--all", help="Every stored result, and re-hash every vector file and image."
    ),
    bundle: Path | None = typer.Option(
        None,
        "--bundle",
        help="A folder `semwh bundle` wrote: check its manifest and recompute its results.",
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Check each input vector file's size, rows and SHA-256, recompute stored results from
    their recorded parameters and seeds, and report each as reproduced, drifted or inputs
    changed. With --all, also re-hash every vector file and image and name each damaged one
    with the command that repairs it. Only reads (works on a read-only warehouse). Exits
    with 1 unless every result reproduced exactly and every file matches its record.

    With --bundle OUT: check every file of the bundle against its MANIFEST.sha256 (naming each
    missing, extra or altered file) and recompute its results from this warehouse (naming each
    result whose numbers differ from the bundled ones); exits with 1 on any difference.

    Example: semwh verify --all
    """
    from semwh.runs.verify import verify as run_verify

    if bundle is not None:
        _verify_bundle(ctx, bundle, fmt, others=sweep is not None or result is not None or every)
        return

    report = run_verify(state(ctx).warehouse(), sweep_id=sweep, result=result, every=every)
    print_table(report.table(), fmt, title="verify")
    listed = {d.path for d in report.damage}
    root = state(ctx).warehouse().vectors
    for path, problem in sorted(report.bad_files.items()):
        if root.show(path) not in listed:
            err_console.print(
                f"[red]vector file {escape(root.show(path))}[/red] {escape(problem)}: "
                "run `semwh repair`",
                highlight=False,
                soft_wrap=True,
            )
    for damage in report.damage:
        err_console.print(
            f"[red]damaged:[/red] {escape(damage.line())}", highlight=False, soft_wrap=True
        )
    err_console.print(report.summary(), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


def _verify_bundle(ctx: typer.Context, folder: Path, fmt: str, *, others: bool) -> None:
    from semwh.errors import ConfigError
    from semwh.results.bundle_check import verify_bundle

    if others:
        raise ConfigError(
            "--bundle checks the bundle's own results: leave out --sweep, --result and --all"
        )
    report = verify_bundle(state(ctx).warehouse(), folder)
    print_table(report.table(), fmt, title="verify --bundle")
    for finding in report.problems():
        err_console.print(
            f"[red]{finding.kind} {escape(finding.name)}: {finding.status}[/red]: "
            f"{escape(finding.detail)}",
            highlight=False,
            soft_wrap=True,
        )
    err_console.print(report.summary(), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
