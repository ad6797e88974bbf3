"""The stored intervals and FDR families the figures draw, read in one place.

Each stored result has its bootstrap interval (``ci_low``, ``ci_high``, from ``--bootstrap
N``) and, against a target with subjects, its noise ceiling; each sweep is one
Benjamini–Hochberg family. :func:`with_intervals` gives layer-curve rows their tests'
intervals (``ci_low_<test>``, ``ci_high_<test>``, ``n_bootstrap_<test>``) and measure-curve
rows theirs (``ci_low``, ``ci_high``, ``n_bootstrap``); rows that already carry those columns
(a view that has them) keep their own. :func:`sweep_families` describes the families.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from semwh.results.report.figures import Family

Row = dict[str, Any]

#: The tests of the layer curves whose intervals the rows carry.
CURVE_TESTS = ("2v2", "rsa")


def _ids(rows: Sequence[Row], column: str) -> list[int]:
    return sorted({int(r[column]) for r in rows if r.get(column) is not None})


def with_intervals(conn: Any, rows: Sequence[Row]) -> list[Row]:
    """``rows`` (of layer_curves, or of measure_curves: rows with a ``result_id``) with each
    result's stored bootstrap interval and its number of resamples.

    A layer-curve row names no result: its tests' results are the members of its sweep
    between its layer space (``space``, else ``MODEL/LAYER``) and its target.
    """
    if not rows:
        return []
    out = [dict(r) for r in rows]
    if all("result_id" in r for r in out):
        ids = _ids(out, "result_id")
        found = {
            int(rid): (low, high, boot)
            for rid, low, high, boot in _select(
                conn,
                "SELECT result_id, ci_low, ci_high, bootstrap FROM results "
                "WHERE result_id IN ({ids})",
                ids,
            )
        }
        for r in out:
            rid = r.get("result_id")
            low, high, boot = (
                (None, None, None) if rid is None else found.get(int(rid), (None,) * 3)
            )
            r.setdefault("ci_low", low)
            r.setdefault("ci_high", high)
            r.setdefault("n_bootstrap", boot or None)
        return out
    sweeps = _ids(out, "sweep_id")
    found_sweep: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for sweep_id, test, a, b, level, low, high, boot in _select(
        conn,
        "SELECT m.sweep_id, m.test, r.space_a, r.space_b, coalesce(r.level, 'concept'), "
        "r.ci_low, r.ci_high, r.bootstrap FROM sweep_members AS m "
        "JOIN results AS r ON r.result_id = m.result_id WHERE m.sweep_id IN ({ids})",
        sweeps,
    ):
        found_sweep[(int(sweep_id), test, a, b, level)] = (low, high, boot)
    for r in out:
        space = r.get("space") or f"{r['model']}/{r['layer']}"
        for test in CURVE_TESTS:
            key = (r.get("sweep_id"), test, space, r.get("word_space"), r.get("level", "concept"))
            low, high, boot = found_sweep.get(key, (None, None, None))
            r.setdefault(f"ci_low_{test}", low)
            r.setdefault(f"ci_high_{test}", high)
            r.setdefault(f"n_bootstrap_{test}", boot or None)
    return out


def sweep_families(conn: Any, rows: Sequence[Row]) -> dict[int, Family]:
    """The FDR family (sweep) of every ``sweep_id`` in ``rows``: its size, tests, models and
    targets, as the ``sweeps`` table records them."""
    families = {}
    for sweep_id, n_tests, tests, models, targets in _select(
        conn,
        "SELECT sweep_id, n_tests, tests, models, word_spaces FROM sweeps "
        "WHERE sweep_id IN ({ids})",
        _ids(rows, "sweep_id"),
    ):
        families[int(sweep_id)] = Family(
            sweep_id=int(sweep_id),
            n_tests=int(n_tests or 0),
            tests=tuple(_names(tests)),
            models=tuple(_names(models)),
            targets=tuple(_names(targets)),
        )
    return families


def _names(text: Any) -> list[str]:
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _select(conn: Any, sql: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` for the integer ids (bound parameters; none: no rows)."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    return conn.execute(sql.format(ids=marks), list(ids)).fetchall()


__all__ = ["CURVE_TESTS", "sweep_families", "with_intervals"]
