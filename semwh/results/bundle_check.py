"""`semwh verify --bundle`: a results bundle checked against its manifest and recomputed
from the warehouse (:mod:`semwh.results.bundle` writes bundles)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from semwh.results.bundle import (
    INFO,
    MANIFEST,
    TABLES,
    Chosen,
    bundle_rows,
    csv_cell,
    definitions,
    files_of,
    input_hashes,
    inside,
    read_manifest,
    row_key,
    sha256_file,
)
from semwh.results.latex import depths, latex_tables
from semwh.warehouse.layout import Warehouse

AGREES = "agrees"


@dataclass(frozen=True)
class BundleFinding:
    """One file or result of a bundle, and what checking it found."""

    kind: str  # file | table | result
    name: str
    status: str  # agrees | missing | extra | altered | differs
    detail: str


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found: each problem file, table and result, and each
    result that agrees."""

    folder: Path
    findings: list[BundleFinding] = field(default_factory=list)
    n_files: int = 0
    manifest_sha256: str = ""

    @property
    def ok(self) -> bool:
        return all(f.status == AGREES for f in self.findings)

    def problems(self) -> list[BundleFinding]:
        return [f for f in self.findings if f.status != AGREES]

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {"kind": f.kind, "name": f.name, "status": f.status, "detail": f.detail}
                for f in self.findings
            ],
            schema=pa.schema([(n, pa.string()) for n in ("kind", "name", "status", "detail")]),
        )

    def summary(self) -> str:
        results = [f for f in self.findings if f.kind == "result"]
        agree = sum(f.status == AGREES for f in results)
        files = [f for f in self.findings if f.kind == "file"]
        return (
            f"bundle {self.folder}: {self.n_files} file(s) in the manifest, {len(files)} "
            f"missing, extra or altered; {agree} of {len(results)} result(s) agree with the "
            f"warehouse; {len(self.problems())} problem(s); {MANIFEST} SHA-256 "
            f"{self.manifest_sha256} (compare it with the one quoted with the bundle)"
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _compare_rows(
    label: str,
    bundled: Mapping[tuple[Any, str, int], Mapping[str, Any]],
    current: Mapping[tuple[Any, str, int], Mapping[str, Any]],
    problems: dict[str, list[str]],
) -> None:
    for key in current.keys() - bundled.keys():
        problems.setdefault(f"{key[1]}:{key[2]}", []).append(f"its row is missing from {label}")
    for key, row in bundled.items():
        ref = f"{key[1]}:{key[2]}"
        now = current.get(key)
        if now is None:
            continue  # not stored any more: named once, by the caller
        changed = [
            f"{name} {row.get(name)!r} in {label}, {now.get(name)!r} in the warehouse"
            for name in row
            if name in now and not _same(row.get(name), now.get(name))
        ]
        if changed:
            problems.setdefault(ref, []).append("; ".join(changed[:4]))


def _stray_rows(
    label: str,
    keys: list[tuple[Any, str, int] | None],
    chosen: set[tuple[Any, str, int]],
    report: BundleReport,
) -> None:
    """Name the rows of a results table that are none of the bundle's results (a row added
    by hand), unreadable, or written twice: such rows are not compared with the warehouse."""
    stray: list[str] = []
    for key in dict.fromkeys(keys):
        if key is None:
            stray.append("a row without a readable test, sweep_id and result_id")
        elif key not in chosen:
            stray.append(f"row {key[1]}:{key[2]} (sweep {key[0]}) is none of its results")
        elif keys.count(key) > 1:
            stray.append(f"row {key[1]}:{key[2]} appears {keys.count(key)} times")
    if stray:
        report.findings.append(
            BundleFinding(
                "table",
                label,
                "differs",
                "; ".join(stray[:4]) + " (bundle.json lists the bundle's results)",
            )
        )


def verify_bundle(wh: Warehouse, folder: Path) -> BundleReport:
    """Check a bundle: every file against ``MANIFEST.sha256`` (each missing, extra or altered
    file named), its result tables and LaTeX tables against the warehouse's stored rows, and
    each bundled result recomputed from the warehouse (:func:`semwh.runs.verify.recompute`).
    Only reads.

    Raises:
        NotFoundError: ``folder`` is not a bundle (no folder, no manifest).
        InputError: A malformed manifest line.
    """
    from semwh.runs.verify import REPRODUCED, recompute

    folder = Path(folder)
    report = BundleReport(folder)
    manifest = read_manifest(folder)
    report.n_files = len(manifest)
    report.manifest_sha256 = sha256_file(folder / MANIFEST)
    for rel, digest in sorted(manifest.items()):
        path = folder / rel
        if not path.is_file():
            report.findings.append(BundleFinding("file", rel, "missing", "listed in the manifest"))
        elif not inside(folder, path):
            report.findings.append(
                BundleFinding("file", rel, "altered", "a link to a file outside the bundle")
            )
        elif sha256_file(path) != digest:
            report.findings.append(
                BundleFinding("file", rel, "altered", "its SHA-256 is not the manifest's")
            )
    for rel in files_of(folder):
        if rel != MANIFEST and rel not in manifest:
            report.findings.append(
                BundleFinding("file", rel, "extra", "not listed in the manifest")
            )
    try:
        if not inside(folder, folder / INFO):
            raise ValueError("a link to a file outside the bundle")
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        chosen = [Chosen(s, str(t), int(i)) for s, t, i in info["results"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # Without the list of its results the bundle's numbers cannot be checked.
        report.findings.append(
            BundleFinding(
                "file", INFO, "unreadable", f"{exc}: its results cannot be checked; bundle again"
            )
        )
        return report
    wh = wh.reader()
    with wh.session() as session:
        current = bundle_rows(session, chosen)
        order = depths(session)
        defs = definitions(session, chosen, current)
        recorded = {
            "definitions/sweeps.json": defs["sweeps"],
            "definitions/analysis_runs.json": defs["analysis_runs"],
            "inputs.json": input_hashes(session, current),
        }
    for rel, value in recorded.items():
        detail = _json_file_differs(folder, rel, value)
        if detail:
            report.findings.append(BundleFinding("definition", rel, "differs", detail))
    now = {t: {row_key(r): r for r in current[t]} for t in TABLES}
    problems: dict[str, list[str]] = {}
    stored = {row_key(r) for t in TABLES for r in current[t]}
    for c in chosen:
        if (c.sweep_id, c.test, c.result_id) not in stored:
            problems.setdefault(c.ref, []).append("no longer stored in the warehouse")
    wanted = {(c.sweep_id, c.test, c.result_id) for c in chosen}
    for table in TABLES:
        parquet = folder / "results" / f"{table}.parquet"
        if parquet.is_file() and inside(folder, parquet):
            try:
                rows = pq.read_table(parquet).to_pylist()
            except (OSError, pa.ArrowException) as exc:
                rows = []
                report.findings.append(
                    BundleFinding("table", f"results/{table}.parquet", "differs", str(exc))
                )
            _stray_rows(f"results/{table}.parquet", [_row_key(r) for r in rows], wanted, report)
            _compare_rows(
                f"results/{table}.parquet",
                {key: r for r in rows if (key := _row_key(r)) is not None},
                now[table],
                problems,
            )
        path = folder / "results" / f"{table}.csv"
        if path.is_file() and inside(folder, path):
            with path.open(newline="", encoding="utf-8") as fh:
                text_rows = list(csv.DictReader(fh))
            _stray_rows(f"results/{table}.csv", [_text_key(r) for r in text_rows], wanted, report)
            as_text = {k: {n: csv_cell(v) for n, v in r.items()} for k, r in now[table].items()}
            _compare_rows(
                f"results/{table}.csv",
                {key: r for r in text_rows if (key := _text_key(r)) is not None},
                as_text,
                problems,
            )
    expected = latex_tables(current, order)
    for rel in files_of(folder):
        if rel.startswith("tables/") and rel not in expected:
            report.findings.append(
                BundleFinding("table", rel, "differs", "none of the bundle's results' tables")
            )
    for rel, text in expected.items():
        path = folder / rel
        if (
            not path.is_file()
            or not inside(folder, path)
            or path.read_text(encoding="utf-8") != _strip_stamp(text, path)
        ):
            report.findings.append(
                BundleFinding(
                    "table",
                    rel,
                    "differs",
                    "the LaTeX table does not show the warehouse's stored numbers",
                )
            )
    pairs = list(dict.fromkeys((c.test, c.result_id) for c in chosen))
    verdicts = {(v.test, v.result_id): v for v in recompute(wh, pairs).verdicts}
    for pair in pairs:
        verdict = verdicts.get(pair)
        if verdict is not None and verdict.status != REPRODUCED:
            problems.setdefault(f"{pair[0]}:{pair[1]}", []).append(
                f"recomputing it from the warehouse: {verdict.status}: {verdict.detail}"
            )
    for test, result_id in pairs:
        ref = f"{test}:{result_id}"
        if ref in problems:
            report.findings.append(
                BundleFinding("result", ref, "differs", " | ".join(problems[ref]))
            )
        else:
            report.findings.append(
                BundleFinding(
                    "result",
                    ref,
                    AGREES,
                    "bundled numbers = stored numbers = numbers recomputed now",
                )
            )
    return report


def _json_paths(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two JSON values differ (``[0].seed``, ``words.content_sha256``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in sorted(a.keys() | b.keys()) for p in _json_paths(
            a.get(k), b.get(k), f"{at}.{k}" if at else str(k))]  # fmt: skip
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True))
                for p in _json_paths(x, y, f"{at}[{i}]")]  # fmt: skip
    return [] if _same(a, b) else [at or "the whole file"]


def _json_file_differs(folder: Path, rel: str, value: Any) -> str:
    """Why the bundled JSON file ``rel`` is not ``value`` as the warehouse gives it now
    ("" when it is)."""
    path = folder / rel
    if not path.is_file() or not inside(folder, path):
        return "missing"
    try:
        bundled = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    now = json.loads(json.dumps(value, sort_keys=True, default=str))
    paths = _json_paths(bundled, now)
    if not paths:
        return ""
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return f"not what the warehouse records now: {', '.join(paths[:3])}{more}"


def _row_key(row: dict[str, Any]) -> tuple[Any, str, int] | None:
    try:
        return row_key(row)
    except (KeyError, ValueError, TypeError):
        return None


def _text_key(row: dict[str, str]) -> tuple[Any, str, int] | None:
    try:
        sweep = row.get("sweep_id") or None
        return (int(sweep) if sweep else None, str(row["test"]), int(row["result_id"]))
    except (KeyError, ValueError, TypeError):
        return None


def _strip_stamp(text: str, path: Path) -> str:
    """``text`` with its first line (the version stamp) as the bundled file has it."""
    bundled = path.read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    if bundled.startswith("% semwh ") and first.startswith("% semwh "):
        return bundled.partition("\n")[0] + "\n" + rest
    return text


__all__ = ["AGREES", "BundleFinding", "BundleReport", "verify_bundle"]
