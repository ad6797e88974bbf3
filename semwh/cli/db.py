"""`semwh init` and `semwh db upgrade|downgrade|current|history|copy`."""

from __future__ import annotations

import typer

from semwh.cli.state import console, state
from semwh.warehouse import migrate
from semwh.warehouse.copy import copy_registry

app = typer.Typer(
    help="Manage the registry schema (Alembic migrations).\n\nExample: semwh db current",
    no_args_is_help=True,
)


def _say(text: str) -> None:
    # One line per message: paths must not be wrapped at the terminal width (scripts grep them).
    console.print(text, soft_wrap=True, highlight=False, markup=False)


def init(ctx: typer.Context) -> None:
    """Create the warehouse folder and migrate its registry to the newest schema.

    Running it again on an up-to-date warehouse changes nothing.

    Example: semwh --warehouse ./wh init
    """
    wh = state(ctx).new_warehouse()
    before, after = migrate.init_warehouse(wh)
    # A registry on a server is named by its URL (never its password), not a local folder.
    what = f"warehouse {wh.root}" if wh.registry_file is not None else f"registry {wh.shown_url}"
    if before == after:
        _say(f"{what} is up to date (schema {after})")
    else:
        _say(f"initialised {what} (schema {before or 'none'} -> {after})")
    _say(f"vectors root: {wh.vectors.location}")


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Argument("head", help="Target revision."),
) -> None:
    """Upgrade the registry schema.

    Example: semwh db upgrade
    """
    wh = state(ctx).new_warehouse()
    _say(f"schema now at {migrate.upgrade(wh, revision)}")


# "-1" (one revision back) is the revision argument, not an unknown option.
@app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help="Target revision: base, -1, or a revision id."),
    yes: bool = typer.Option(
        False, "--yes", help="Confirm a downgrade that removes rows (or goes to base)."
    ),
) -> None:
    """Downgrade the registry schema (data in dropped tables is lost).

    A downgrade that removes rows lists them (table: rows) and needs --yes; so does `base`,
    which drops every table of the registry.

    Example: semwh db downgrade -1
    """
    wh = state(ctx).warehouse(check_schema=False)
    drops = migrate.confirm_downgrade(wh, revision, confirmed=yes)
    if drops:
        _say(f"removing {migrate.describe_drops(drops)}")
    _say(f"schema now at {migrate.downgrade(wh, revision) or 'base'}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the registry's schema revision and the one this semwh expects.

    Example: semwh db current
    """
    wh = state(ctx).warehouse(check_schema=False)
    rev = migrate.current_revision(wh)
    head = migrate.head_revision()
    status = "up to date" if rev == head else "run `semwh db upgrade`"
    _say(f"{rev or 'none'} (code expects {head}: {status})")


@app.command()
def history() -> None:
    """List the schema revisions, oldest first.

    Example: semwh db history
    """
    for rev, down, message in migrate.history():
        _say(f"{down or 'base'} -> {rev}  {message}")


@app.command()
def copy(
    ctx: typer.Context,
    to: str = typer.Option(
        ..., "--to", help="SQLAlchemy URL of the empty target registry (PostgreSQL or DuckDB)."
    ),
) -> None:
    """Copy every registry table into another, empty database; the vectors stay where they are.

    Both registries end at the same schema revision (a database without a schema gets it
    first); a target that holds rows is refused. The copy records where the vectors are.

    Example: semwh --warehouse ./wh db copy --to postgresql+psycopg://semwh@dbhost/semwh
    """
    summary = copy_registry(state(ctx).warehouse(), to)
    _say(
        f"copied {summary.total} rows of {len(summary.rows)} tables to {summary.target} "
        f"(schema {summary.revision}) in {summary.seconds} s"
    )
    _say(f"vectors root: {summary.vectors}")
