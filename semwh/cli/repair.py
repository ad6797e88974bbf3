"""`semwh repair`: rebuild or release damaged vector files; name what repairs the rest."""

from __future__ import annotations

import typer

from semwh.cli.state import console, err_console, state


def repair(ctx: typer.Context) -> None:
    """Re-hash every vector file and image; rebuild each damaged vector file the warehouse
    can rebuild (a layer space from its per-image shards), take damaged extraction shards out
    so the same `semwh extract` command extracts them again, and name the command that
    repairs the rest (a space's ingest, an image's folder). Exits with 1 while anything is
    left to do.

    Example: semwh repair
    """
    from semwh.runs.repair import repair as run_repair

    report = run_repair(state(ctx).warehouse())
    for damage in report.damage:
        err_console.print(
            f"{damage.status}: {damage.line()}", markup=False, highlight=False, soft_wrap=True
        )
    console.print(report.summary(), markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
