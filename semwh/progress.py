"""How long-running library work says how far it has got; only the CLI draws bars.

A library function that takes a while accepts ``progress: Progress | None``: a callable it
calls with *what* is being done (a short description such as ``"extract lite0"``), how many
units are done and how many there are in all (``None`` while the total is unknown). The
library never prints and never imports a terminal library; :func:`semwh.cli.printing.bars`
turns these calls into rich progress bars on stderr, a notebook can pass its own callable,
and ``None`` reports nothing.

Within one library call, the calls for one description never go down in ``done`` and end at
``total``; each library call starts again from 0 (a second extraction of the same model
reports under the same description), and a call may come from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from semwh.errors import ConfigError

#: ``progress(what, done, total)``: ``done`` units of ``what`` finished out of ``total``.
Progress = Callable[[str, int, "int | None"], None]


def check_progress(progress: object) -> None:
    """Refuse, before any work, a ``progress`` that cannot be called (``progress=True``)."""
    if progress is not None and not callable(progress):
        raise ConfigError(
            f"progress must be a callable progress(what, done, total) or None, not "
            f"{type(progress).__name__}: see semwh.progress"
        )


def report(progress: Progress | None, what: str, done: int, total: int | None) -> None:
    """Call ``progress`` when there is one (the one-line guard every caller would repeat)."""
    if progress is not None:
        progress(what, done, total)


__all__ = ["Progress", "check_progress", "report"]
