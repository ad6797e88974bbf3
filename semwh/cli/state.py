"""What every command gets from the global options: settings and the warehouse."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from semwh.api import SemanticWarehouse
from semwh.config import Settings
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import open_warehouse


@dataclass
class CliState:
    settings: Settings
    debug: bool = False

    def warehouse(self, *, check_schema: bool = True) -> Warehouse:
        """The existing warehouse, schema-checked (commands that write or read)."""
        return open_warehouse(
            self.settings.warehouse,
            self.settings.db_url,
            check_schema=check_schema,
            vectors=self.settings.vectors,
        )

    def allow_read(self, folders: list[Path] | None) -> list[Path]:
        """Folders user SQL may read: ``SEMWH_ALLOW_READ`` and the command's ``--allow-read``."""
        return [*self.settings.allow_read, *(folders or [])]

    def api(self, folders: list[Path] | None = None) -> SemanticWarehouse:
        """The existing warehouse as the Python API's object (what a notebook gets)."""
        return SemanticWarehouse(self.warehouse(), self.allow_read(folders))

    def new_warehouse(self) -> Warehouse:
        """The warehouse handle whether or not it exists yet (init and db commands)."""
        return warehouse_from_settings(self.settings)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState), "global options were not parsed"
    return obj


# Piped or redirected output has no terminal width; Rich would then wrap tables at 80
# columns, splitting model names across lines in logs and CI output.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
