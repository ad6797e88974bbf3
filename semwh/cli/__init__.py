"""The `semwh` command: a thin layer over the library, and its error boundary."""

from __future__ import annotations

import signal
import sys
import traceback
from types import FrameType
from typing import NoReturn

import typer
from rich.markup import escape

from semwh.cli import analyze, db, extract, ingest, sql
from semwh.cli import bundle as bundle_cmd
from semwh.cli import demo as demo_cmd
from semwh.cli import diff as diff_cmd
from semwh.cli import embed as embed_cmd
from semwh.cli import export as export_cmd
from semwh.cli import models as models_cmd
from semwh.cli import plot as plot_cmd
from semwh.cli import query as query_cmd
from semwh.cli import repair as repair_cmd
from semwh.cli import report as report_cmd
from semwh.cli import run as run_cmd
from semwh.cli import verify as verify_cmd
from semwh.cli.state import CliState, err_console
from semwh.config import ENV_DB, ENV_VECTORS, ENV_WAREHOUSE, kernel_choice, load_settings
from semwh.errors import SemwhError
from semwh.version import __version__

app = typer.Typer(
    name="semwh",
    help="semwh: a results warehouse for the emergence of semantics in vision networks.\n\n"
    "Example: semwh --warehouse ./wh init",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"semwh {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    warehouse: str = typer.Option(
        None, "--warehouse", "-w", envvar=ENV_WAREHOUSE, help="Warehouse folder."
    ),
    db_url: str = typer.Option(
        None, "--db", envvar=ENV_DB, help="SQLAlchemy URL of the registry (default: DuckDB file)."
    ),
    vectors: str = typer.Option(
        None,
        "--vectors",
        envvar=ENV_VECTORS,
        help="Vectors root: a folder or a storage URI (s3://bucket/prefix, gs://…). With "
        "`init`, recorded in the registry for every machine; otherwise where this machine "
        "reaches the recorded root.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Global options shared by every command."""
    # Checked before any work: an analysis reads it only when it first permutes.
    kernel_choice()
    ctx.obj = CliState(settings=load_settings(warehouse, db_url, vectors), debug=debug)


app.command("init")(db.init)
app.add_typer(db.app, name="db")
app.add_typer(ingest.app, name="ingest")
app.add_typer(analyze.app, name="analyze")
app.command("sql")(sql.sql)
app.command("report")(report_cmd.report)
app.add_typer(plot_cmd.app, name="plot")
app.command("export")(export_cmd.export)
app.command("query")(query_cmd.query)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("extract")(extract.extract)
app.command("models")(models_cmd.models)
app.command("embed")(embed_cmd.embed)
app.command("verify")(verify_cmd.verify)
app.command("repair")(repair_cmd.repair)
app.command("bundle")(bundle_cmd.bundle)
app.command("diff")(diff_cmd.diff)


def main() -> None:
    """Entry point: run the app and turn semwh errors into one red line and exit code 1.

    Ctrl-C is one line and exit code 130 wherever it lands: Typer turns a KeyboardInterrupt
    into a silent exit, and a library interrupted inside its own code (a DuckDB query, a
    database driver) raises its own error instead, so the handler notes the signal and every
    way out of the app after it is reported alike.
    """
    debug = "--debug" in sys.argv
    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        signal.default_int_handler(signum, frame)

    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:  # not where Ctrl-C is ignored on purpose
        signal.signal(signal.SIGINT, on_sigint)
    try:
        app(prog_name="semwh")
    except SemwhError as exc:
        if interrupted:
            _interrupted(debug)
        if debug:
            traceback.print_exc()
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except MemoryError:
        if interrupted:
            _interrupted(debug)
        if debug:
            traceback.print_exc()
        err_console.print(
            "[red]error:[/red] out of memory: run it with smaller counts (-n/--permutations, "
            "--bootstrap, --batch-size) or on a machine with more memory",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    except SystemExit:
        if interrupted:
            _interrupted(debug)
        raise
    except BaseException:
        if not interrupted:
            raise
        _interrupted(debug)
    finally:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)


def _interrupted(debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    err_console.print("[red]interrupted[/red] (Ctrl-C): the command stopped", highlight=False)
    sys.exit(130)
