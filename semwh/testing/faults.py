"""Fault injection: make a semwh process crash, fail or stop at a named point.

This is a testing knob for the reliability tests, off unless the environment variable
``SEMWH_FAULT`` is set (read in :mod:`semwh.config`). Its value is a comma-separated list of
``POINT:ACTION[@N]``: the N-th time (default: the first) this process reaches ``POINT``, it
does ``ACTION``:

* ``kill``: SIGKILL itself, a crash with no cleanup (no ``finally``, no rollback);
* ``enospc``: raise ``OSError(ENOSPC)``, as a full disk would;
* ``erofs``: raise ``OSError(EROFS)``, as a read-only filesystem would;
* ``pause=SECONDS``: sleep, to hold the process at that point.

Points (where the library calls :func:`fault_point`):

* ``vectors.tmp_written``: a vector file's rows are in its temporary file under ``tmp/``,
  not yet renamed into ``vectors/``;
* ``vectors.renamed``: the file is complete under ``vectors/`` but not yet registered;
* ``space.swapping``: a new version of a word or external space is written and every row of
  its one registry transaction is flushed (source, space, files), not yet committed;
* ``sweep.committed``: a batch of a sweep's results is stored, its FDR and its
  ``analysis_runs`` row are not yet.

Example: ``SEMWH_FAULT=vectors.renamed:kill@3 semwh extract ...`` kills the job right after
its third vector file lands, before the registry knows of it.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass

from semwh.config import fault_spec
from semwh.errors import ConfigError

POINTS = frozenset({"vectors.tmp_written", "vectors.renamed", "space.swapping", "sweep.committed"})
ACTIONS = frozenset({"kill", "enospc", "erofs", "pause"})


@dataclass(frozen=True)
class Fault:
    """One injected fault: do ``action`` at the ``hit``-th arrival at ``point``."""

    point: str
    action: str
    hit: int = 1
    seconds: float = 0.0


def parse_faults(spec: str | None) -> list[Fault]:
    """Parse a ``SEMWH_FAULT`` value.

    Raises:
        ConfigError: An unknown point or action, or a malformed count.
    """
    faults: list[Fault] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        point, _, rest = item.partition(":")
        action, _, count = rest.partition("@")
        name, _, arg = action.partition("=")
        if point not in POINTS or name not in ACTIONS:
            raise ConfigError(
                f"SEMWH_FAULT {item!r}: expected POINT:ACTION[@N] with POINT one of "
                f"{', '.join(sorted(POINTS))} and ACTION one of kill, enospc, erofs, pause=S"
            )
        try:
            hit = int(count) if count else 1
            seconds = float(arg) if name == "pause" else 0.0
        except ValueError:
            raise ConfigError(f"SEMWH_FAULT {item!r}: N and S must be numbers") from None
        faults.append(Fault(point, name, hit, seconds))
    return faults


# Per-process state: the parsed spec (read once, on first use) and arrivals per point.
_faults: list[Fault] | None = None
_hits: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Mark a named point; does nothing unless ``SEMWH_FAULT`` names it."""
    global _faults
    if _faults is None:
        _faults = parse_faults(fault_spec())
    if not _faults:
        return
    _hits[point] = _hits.get(point, 0) + 1
    for fault in _faults:
        if fault.point != point or fault.hit != _hits[point]:
            continue
        if fault.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # the signal is asynchronous; never run past the point
        elif fault.action == "pause":
            time.sleep(fault.seconds)
        else:
            code = errno.ENOSPC if fault.action == "enospc" else errno.EROFS
            raise OSError(code, os.strerror(code), f"injected at {point}")
