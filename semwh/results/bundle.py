"""`semwh bundle`: the numbers and figures of a paper in one folder, with proof of where they
came from; `semwh verify --bundle` checks such a folder against itself and the warehouse.

A bundle holds

* ``results/comparisons``, ``results/recovery``, ``results/differences`` (``.csv`` and
  ``.parquet``): every column the warehouse stores for each chosen result, with the test, the
  sweep it was chosen through and that sweep's ``p_fdr``;
* ``tables/*.tex``: one booktabs table per measure and target (word space, RDM, ...);
* ``report/``: the figures (``report/figures/``) and page of the warehouse's report, drawn by
  :func:`draw_figures`;
* ``definitions/``: the chosen sweeps (options, seeds, family sizes) and the analysis runs of
  the results (parameters, seeds, recorded versions, input hashes, device);
* ``inputs.json``: the content SHA-256 of every space the results depend on, the hashes the
  results were computed from and the SHA-256 of each of the spaces' vector files;
* ``versions.json``: semwh's and the libraries' versions where the bundle was written;
* ``bundle.json`` (what was chosen), ``README.md`` and ``MANIFEST.sha256`` (``sha256sum``
  format, every other file).

The folder is written beside ``OUT`` under a hidden name and renamed into place when complete,
so an interrupted bundle never leaves a half bundle at ``OUT``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from semwh.errors import InputError, NotFoundError, OutputError
from semwh.runs.provenance import canonical_json
from semwh.version import __version__
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    Result,
    Space,
    Sweep,
    SweepMember,
    VectorFile,
)

BUNDLE_FORMAT = 1
MANIFEST = "MANIFEST.sha256"
INFO = "bundle.json"
#: The results tables of a bundle, by the kind of result they hold.
TABLES = ("comparisons", "recovery", "differences")
#: Libraries whose versions a bundle records (besides semwh and Python).
LIBRARIES = (
    "numpy",
    "scipy",
    "torch",
    "torchvision",
    "pyarrow",
    "duckdb",
    "sqlalchemy",
    "matplotlib",
    "pandas",
)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Chosen:
    """One bundled result: its test, id and the sweep it was chosen through (None: by id)."""

    sweep_id: int | None
    test: str
    result_id: int

    @property
    def ref(self) -> str:
        return f"{self.test}:{self.result_id}"


@dataclass(frozen=True)
class BundleInfo:
    """What :func:`build_bundle` wrote."""

    folder: Path
    files: list[str]
    n_results: int
    selection: str
    figures_note: str


# Choosing -------------------------------------------------------------------------------


def _table_of(test: str) -> str:
    return {"recovery": "recovery", "diff": "differences"}.get(test, "comparisons")


def _result_ref(session: Session, text: str) -> tuple[str, int]:
    """``TEST:ID`` or a bare id of the ``results`` table, as (test, id), checked to exist."""
    from semwh.runs.verify import _row, parse_result_ref

    if text.strip().isdigit():
        measure = session.scalar(select(Result.measure).where(Result.result_id == int(text)))
        if measure is None:
            raise NotFoundError(
                f"--result {text}: no result {text} in the results table (use TEST:ID for "
                "recovery:ID or diff:ID)"
            )
        return str(measure), int(text)
    test, result_id = parse_result_ref(text)
    if _row(session, test, result_id) is None:
        raise NotFoundError(f"--result {text}: no {test} result {result_id} in the warehouse")
    return test, result_id


def choose_results(
    wh: Warehouse, sweep_ids: Sequence[int] = (), results: Sequence[str] = ()
) -> tuple[list[Chosen], str]:
    """The results a bundle holds and a line saying how they were chosen.

    The members of each sweep of ``sweep_ids`` (with the sweep's ``p_fdr``) and each result
    of ``results`` (``TEST:ID``, or an id of the ``results`` table); with neither, the members
    of the newest complete sweep, or every stored result when the warehouse has no sweep.

    Raises:
        NotFoundError: An unknown sweep, a sweep without members, an unknown result, or
            nothing stored to bundle.
        ConfigError: A malformed ``TEST:ID``.
    """
    from semwh.runs.verify import chosen_results

    out: list[Chosen] = []
    with wh.session() as session:
        if not sweep_ids and not results:
            newest = session.scalar(
                select(func.max(Sweep.sweep_id)).where(Sweep.status == "complete")
            )
            if newest is None:
                everything = chosen_results(wh, every=True)
                if not everything:
                    raise NotFoundError(
                        f"nothing to bundle: {wh.root} holds no results (run `semwh analyze "
                        "sweep` first)"
                    )
                return [Chosen(None, t, i) for t, i in everything], (
                    "every stored result (the warehouse has no complete sweep)"
                )
            sweep_ids = [int(newest)]
            how = f"the newest complete sweep ({newest})"
        else:
            parts = [f"sweep {i}" for i in sweep_ids] + [f"result {r}" for r in results]
            how = ", ".join(parts)
        for sweep_id in dict.fromkeys(sweep_ids):
            if session.get(Sweep, sweep_id) is None:
                raise NotFoundError(f"--sweep {sweep_id}: no such sweep (see the sweeps table)")
            members = session.execute(
                select(SweepMember.test, SweepMember.result_id)
                .where(SweepMember.sweep_id == sweep_id)
                .order_by(SweepMember.test, SweepMember.result_id)
            ).all()
            if not members:
                raise NotFoundError(f"--sweep {sweep_id}: the sweep has no members")
            out += [Chosen(sweep_id, str(t), int(i)) for t, i in members]
        for text in results:
            test, result_id = _result_ref(session, text)
            out.append(Chosen(None, test, result_id))
    return list(dict.fromkeys(out)), how


# The rows -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A stored value as a bundle writes it: JSON text for options, ISO text for times."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return canonical_json(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _arrow_type(column: Any) -> pa.DataType:
    name = type(column.type).__name__.lower()
    if "int" in name:
        return pa.int64()
    if "double" in name or "float" in name or "numeric" in name:
        return pa.float64()
    return pa.string()


def _row_columns(model: type) -> list[tuple[str, str, pa.DataType]]:
    """(column name, attribute key, Arrow type) of each column of ``model``'s table."""
    mapper = sa_inspect(model)
    return [
        (col.name, mapper.get_property_by_column(col).key, _arrow_type(col))
        for col in model.__table__.columns  # type: ignore[attr-defined]
    ]


_LEAD = [("sweep_id", pa.int64()), ("test", pa.string()), ("p_fdr", pa.float64())]


def _schema(table: str) -> pa.Schema:
    from semwh.warehouse.models import ResultDiff, ResultRecovery

    model = {"comparisons": Result, "recovery": ResultRecovery, "differences": ResultDiff}[table]
    return pa.schema(_LEAD + [(name, kind) for name, _, kind in _row_columns(model)])


def bundle_rows(session: Session, chosen: Sequence[Chosen]) -> dict[str, list[dict[str, Any]]]:
    """The stored rows of ``chosen``, by bundle table, as the bundle writes them (a chosen
    result no longer stored is left out)."""
    from semwh.runs.verify import _row

    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    for c in chosen:
        row = _row(session, c.test, c.result_id)
        if row is None:
            continue
        p_fdr = None
        if c.sweep_id is not None:
            p_fdr = session.scalar(
                select(SweepMember.p_fdr).where(
                    SweepMember.sweep_id == c.sweep_id,
                    SweepMember.test == c.test,
                    SweepMember.result_id == c.result_id,
                )
            )
        values: dict[str, Any] = {"sweep_id": c.sweep_id, "test": c.test, "p_fdr": p_fdr}
        for name, key, _ in _row_columns(type(row)):
            values[name] = _plain(getattr(row, key))
        out[_table_of(c.test)].append(values)
    return out


def row_key(row: dict[str, Any]) -> tuple[Any, str, int]:
    return (row.get("sweep_id"), str(row["test"]), int(row["result_id"]))


def csv_cell(value: Any) -> str:
    """A value as a bundle's CSV writes it: floats in full (they read back exactly)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else {"nan": "NaN"}.get(repr(value), repr(value))
    return str(value)


def csv_text(table: str, rows: Sequence[dict[str, Any]]) -> str:
    names = _schema(table).names
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([csv_cell(row.get(n)) for n in names])
    return buf.getvalue()


# LaTeX ----------------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def format_p(p: float | None) -> str:
    """A p-value for a table: three decimals, ``$<$0.001`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "--"
    return "$<$0.001" if p < 0.001 else f"{p:.3f}"


def format_number(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "--"
    return f"{x:.{digits}f}"


_STATISTIC_LABEL = {"rsa": r"$\rho$", "2v2": "accuracy", "recovery": "success rate"}


def _slug(text: str) -> str:
    clean = _SAFE.sub("_", text).strip("_") or "x"
    if clean == text:
        return text
    return f"{clean[:40]}+{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _depths(session: Session) -> dict[str, tuple[str, int]]:
    rows = session.execute(select(Space.name, Space.model, Space.depth_index)).all()
    return {str(n): (str(m or n), int(d) if d is not None else 0) for n, m, d in rows}


def latex_tables(
    rows: dict[str, list[dict[str, Any]]], depths: dict[str, tuple[str, int]]
) -> dict[str, str]:
    """One booktabs table per measure and target (and options, level): file name -> text."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows["comparisons"]:
        key = (
            str(row["test"]),
            str(row["space_b"]),
            str(row.get("level") or "concept"),
            str(row.get("options") or "{}"),
            str(row.get("sweep_id") or ""),
        )
        groups.setdefault(key, []).append(row)
    for row in rows["recovery"]:
        key = ("recovery", str(row["space_b"]), "image", str(row.get("similarity")), "")
        groups.setdefault(key, []).append(row)
    out: dict[str, str] = {}
    for key, members in groups.items():
        test, target, level, options, sweep = key
        name = f"{_slug(test)}_{_slug(target)}"
        if level != "concept" and test != "recovery":
            name += f"_{level}"
        if f"tables/{name}.tex" in out:
            name += "_" + hashlib.sha256("\0".join(key).encode()).hexdigest()[:8]
        members.sort(key=lambda r: (*depths.get(r["space_a"], (r["space_a"], 0)), r["space_a"]))
        out[f"tables/{name}.tex"] = _latex_table(test, target, level, options, sweep, members)
    return out


def _latex_table(
    test: str, target: str, level: str, options: str, sweep: str, rows: list[dict[str, Any]]
) -> str:
    recovery = test == "recovery"
    has_ci = any(r.get("ci_low") is not None for r in rows)
    has_fdr = any(r.get("p_fdr") is not None for r in rows)
    label = _STATISTIC_LABEL.get(test, "statistic")
    heads = ["Space", "$n$" if not recovery else "images", label]
    heads += ["95\\% CI"] * has_ci + ["$p$"] + ["$p_{\\mathrm{FDR}}$"] * has_fdr
    lines = []
    for r in rows:
        value = r.get("accuracy") if recovery else r.get("statistic")
        cells = [
            tex_escape(str(r["space_a"])),
            str(r.get("n_images") if recovery else r.get("n_concepts")),
            format_number(value),
        ]
        if has_ci:
            lo, hi = r.get("ci_low"), r.get("ci_high")
            cells.append(
                "--" if lo is None or hi is None else f"[{format_number(lo)}, {format_number(hi)}]"
            )
        cells.append(format_p(r.get("p_value")))
        if has_fdr:
            cells.append(format_p(r.get("p_fdr")))
        lines.append(" & ".join(cells) + r" \\")
    perms = sorted({int(r.get("n_permutations") or 0) for r in rows})
    if recovery:
        what = f"1 vs 2 recovery of each layer with {tex_escape(target)}"
        how = "success rate; $p$: one-sided binomial test against 0.5"
    else:
        what = f"{tex_escape(test)} of each space against {tex_escape(target)}"
        settings = _json_field(options)
        if isinstance(settings, dict) and settings:
            what += " (" + ", ".join(f"{tex_escape(str(k))} {tex_escape(str(v))}"
                                     for k, v in sorted(settings.items())) + ")"  # fmt: skip
        how = f"{tex_escape(level)} level; $p$: permutation test, "
        how += f"{', '.join(map(str, perms))} permutations"
    if has_fdr:
        how += f"; $p_{{\\mathrm{{FDR}}}}$: Benjamini--Hochberg over sweep {tex_escape(sweep)}"
    if has_ci:
        how += "; CI: bootstrap interval stored with the result"
    label_key = _SAFE.sub("-", f"{test}-{target}-{level}").strip("-")
    return "\n".join(
        [
            f"% semwh {__version__} bundle: {test} against {target} (needs booktabs).",
            r"\begin{table}[ht]",
            r"\centering",
            f"\\caption{{{what}: {how}.}}",
            f"\\label{{tab:{label_key}}}",
            r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}",
            r"\toprule",
            " & ".join(heads) + r" \\",
            r"\midrule",
            *lines,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


# Definitions, inputs, versions --------------------------------------------------------------


def _json_field(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _orm_dict(row: Any, parse: Iterable[str] = ()) -> dict[str, Any]:
    out = {name: _plain(getattr(row, key)) for name, key, _ in _row_columns(type(row))}
    for name in parse:
        out[name] = _json_field(out.get(name))
    return out


def definitions(
    session: Session, chosen: Sequence[Chosen], rows: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """The chosen sweeps and the analysis runs behind the chosen results and sweeps."""
    sweep_ids = sorted({c.sweep_id for c in chosen if c.sweep_id is not None})
    sweeps = [session.get(Sweep, i) for i in sweep_ids]
    analysis_ids = {int(r["analysis_id"]) for t in TABLES for r in rows[t]}
    analysis_ids |= {int(s.analysis_id) for s in sweeps if s is not None and s.analysis_id}
    runs = session.scalars(
        select(AnalysisRun)
        .where(AnalysisRun.analysis_id.in_(sorted(analysis_ids)))
        .order_by(AnalysisRun.analysis_id)
    ).all()
    return {
        "sweeps": [_orm_dict(s, ("models", "word_spaces", "tests", "params")) for s in sweeps if s],
        "analysis_runs": [
            _orm_dict(r, ("params", "library_versions", "input_hashes")) for r in runs
        ],
    }


def input_hashes(session: Session, rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per space the results depend on: its content hash now, the hashes the results were
    computed from, and each of its vector files (path, kind, SHA-256, size, rows)."""
    recorded: dict[str, set[str]] = {}
    for table in TABLES:
        for r in rows[table]:
            for side in ("a", "b"):
                name = str(r[f"space_{side}"])
                recorded.setdefault(name, set())
                if r.get(f"space_{side}_sha256"):
                    recorded[name].add(str(r[f"space_{side}_sha256"]))
    out: dict[str, Any] = {}
    for name in sorted(recorded):
        space = session.scalar(select(Space).where(Space.name == name))
        if space is None:
            out[name] = {"content_sha256": None, "results_computed_from": sorted(recorded[name])}
            continue
        clause = VectorFile.space_id == space.space_id
        if space.layer_id is not None:
            clause = clause | (VectorFile.layer_id == space.layer_id)
        files = session.scalars(select(VectorFile).where(clause).order_by(VectorFile.path)).all()
        out[name] = {
            "kind": space.kind,
            "content_sha256": space.content_sha256,
            "results_computed_from": sorted(recorded[name]),
            "vector_files": [
                {
                    "path": f.path,
                    "kind": f.kind,
                    "sha256": f.sha256,
                    "size_bytes": f.size_bytes,
                    "n_rows": f.n_rows,
                }
                for f in files
            ],
        }
    return out


def versions_now() -> dict[str, Any]:
    """semwh's, Python's and the libraries' versions here (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return {
        "semwh": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": found,
    }


# Figures --------------------------------------------------------------------------------


def draw_figures(wh: Warehouse, folder: Path, chosen: Sequence[Chosen]) -> str:
    """Draw the bundle's figures into ``folder`` (new); returns a line saying what was drawn.

    The one place a bundle calls the report's figure code: today the report of the whole
    warehouse (``semwh report``'s figures and page, its layer curves as ``layer_curves``
    shows them).
    """
    from semwh.results.report import build_report

    try:
        info = build_report(wh, folder)
    except NotFoundError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return f"no figures: {exc}"
    return (
        f"{len(info.figures)} figure file(s) and report.html from `semwh report` "
        "(the warehouse's current layer curves)"
    )


# Writing --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def check_bundle_folder(wh: Warehouse, out: Path, *, force: bool) -> Path:
    """``out`` resolved, or why a bundle may not be written there.

    Raises:
        OutputError: ``out`` is inside the warehouse, a file, or a folder holding files
            (with ``force``: holding files that are not a previous bundle).
    """
    target = out.expanduser().resolve()
    for root in wh.protected_paths:
        resolved = Path(root).expanduser().resolve()
        if target == resolved or resolved in target.parents:
            raise OutputError(
                f"refusing to write the bundle into {out}: it is inside the warehouse "
                f"({root}); choose a folder outside it"
            )
    if target.exists() and not target.is_dir():
        raise OutputError(f"{out} is a file: give a new or empty folder for the bundle")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise OutputError(
                f"{out} already holds files: choose a new or empty folder, or pass --force to "
                "replace a previous bundle there"
            )
        if not (target / MANIFEST).is_file() or not (target / INFO).is_file():
            raise OutputError(
                f"{out} holds files but no semwh bundle ({MANIFEST} and {INFO}): --force only "
                "replaces a previous bundle; choose a new or empty folder"
            )
    return target


def _remove_stale(target: Path) -> None:
    """Hidden folders of earlier bundles to ``target`` whose process is gone."""
    for path in target.parent.glob(f".{target.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(path, ignore_errors=True)
            except PermissionError:
                pass


_CONTENTS = (
    (
        "results/*.csv, results/*.parquet",
        "every stored column of each result, the same rows in both formats; first the test, "
        "the sweep_id it was chosen through and that sweep's p_fdr",
    ),
    (
        "tables/*.tex",
        "one booktabs table per measure and target (\\usepackage{booktabs}); statistics to 3 "
        "decimals, p below 0.001 as <0.001",
    ),
    ("report/", "{figures}"),
    (
        "definitions/sweeps.json",
        "the sweeps: models, word spaces, tests, permutations, seed, family size, options",
    ),
    (
        "definitions/analysis_runs.json",
        "per analysis: parameters, seed, the semwh and library versions recorded when it "
        "ran, input hashes, device",
    ),
    (
        "inputs.json",
        "per input space: its content SHA-256 now, the hashes the results were computed "
        "from, the SHA-256 of each of its vector files",
    ),
    ("versions.json", "semwh, Python and library versions where this bundle was written"),
    ("bundle.json", "the chosen results (sweep, test, id)"),
    ("MANIFEST.sha256", "SHA-256 of every other file (sha256sum -c MANIFEST.sha256)"),
)


def _readme(
    how: str, chosen: Sequence[Chosen], rows: dict[str, list[dict[str, Any]]], figures: str
) -> str:
    counts = ", ".join(f"{len(rows[t])} {t}" for t in TABLES if rows[t]) or "none"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# semwh results bundle",
        "",
        f"Written by semwh {__version__} on {stamp}.",
        "",
        f"Results: {len(chosen)} chosen ({how}); rows: {counts}.",
        "",
        *(f"* `{path}`: {what.replace('{figures}', figures)}" for path, what in _CONTENTS),
        "",
        "Check it (every file against the manifest, the results recomputed from the warehouse):",
        "",
        "    semwh --warehouse WAREHOUSE verify --bundle THIS_FOLDER",
        "",
    ]
    return "\n".join(lines)


def _write_parquet(path: Path, table: str, rows: Sequence[dict[str, Any]]) -> None:
    schema = _schema(table)
    data = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
    pq.write_table(data, path)


def build_bundle(
    wh: Warehouse,
    out: Path,
    *,
    sweep_ids: Sequence[int] = (),
    results: Sequence[str] = (),
    figures: bool = True,
    force: bool = False,
) -> BundleInfo:
    """Write a results bundle of the chosen results into the new folder ``out``.

    Results are chosen as :func:`choose_results` says (default: the newest complete sweep).
    ``figures`` false leaves the figures out. ``force`` replaces a previous bundle at
    ``out`` (and nothing else). Only reads the warehouse.

    Raises:
        OutputError: ``out`` is inside the warehouse, a file, or holds files (see
            :func:`check_bundle_folder`).
        NotFoundError: An unknown sweep or result, or nothing to bundle.
    """
    target = check_bundle_folder(wh, out, force=force)
    wh = wh.reader()
    chosen, how = choose_results(wh, sweep_ids, results)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with wh.session() as session:
            rows = bundle_rows(session, chosen)
            tables = latex_tables(rows, _depths(session))
            defs = definitions(session, chosen, rows)
            inputs = input_hashes(session, rows)
        (tmp / "results").mkdir()
        for table in TABLES:
            if rows[table]:
                (tmp / "results" / f"{table}.csv").write_text(
                    csv_text(table, rows[table]), encoding="utf-8"
                )
                _write_parquet(tmp / "results" / f"{table}.parquet", table, rows[table])
        for name, text in tables.items():
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8")
        note = (
            draw_figures(wh, tmp / "report", chosen)
            if figures
            else "no figures (written with --no-figures)"
        )
        (tmp / "definitions").mkdir()
        for key, value in defs.items():
            _dump(tmp / "definitions" / f"{key}.json", value)
        _dump(tmp / "inputs.json", inputs)
        _dump(tmp / "versions.json", versions_now())
        _dump(
            tmp / INFO,
            {
                "format": BUNDLE_FORMAT,
                "semwh": __version__,
                "warehouse": str(wh.root),
                "selection": how,
                "figures": note,
                "results": [[c.sweep_id, c.test, c.result_id] for c in chosen],
            },
        )
        (tmp / "README.md").write_text(_readme(how, chosen, rows, note), encoding="utf-8")
        listed = _files(tmp)
        (tmp / MANIFEST).write_text(
            "".join(f"{sha256_file(tmp / rel)}  {rel}\n" for rel in listed), encoding="utf-8"
        )
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleInfo(target, [*listed, MANIFEST], len(chosen), how, note)


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", "utf-8")


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` to ``target``; a previous bundle there goes only after."""
    old = None
    if target.exists():
        if any(target.iterdir()):
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        else:
            target.rmdir()
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# Verifying ------------------------------------------------------------------------------

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
            f"warehouse; {len(self.problems())} problem(s)"
        )


def _read_manifest(folder: Path) -> dict[str, str]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise NotFoundError(f"no bundle at {folder}: the folder does not exist")
    if not path.is_file():
        raise NotFoundError(
            f"no bundle at {folder}: it has no {MANIFEST} (write one with `semwh bundle`)"
        )
    entries: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if match is None:
            raise InputError(
                f"{path}, line {number}: not a sha256sum line (HASH  PATH): the manifest is "
                "damaged; write the bundle again"
            )
        entries[match.group(2)] = match.group(1)
    return entries


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _compare_rows(
    label: str,
    bundled: dict[tuple[Any, str, int], dict[str, Any]],
    current: dict[tuple[Any, str, int], dict[str, Any]],
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


def verify_bundle(wh: Warehouse, folder: Path) -> BundleReport:
    """Check a bundle: every file against ``MANIFEST.sha256`` (each missing, extra or altered
    file named), its result tables and LaTeX tables against the warehouse's stored rows, and
    each bundled result recomputed from the warehouse (:func:`semwh.runs.verify.recompute`).
    Only reads.

    Raises:
        NotFoundError: ``folder`` is not a bundle (no folder, no manifest).
        InputError: A malformed manifest line, or an unreadable ``bundle.json``.
    """
    from semwh.runs.verify import REPRODUCED, recompute

    folder = Path(folder)
    report = BundleReport(folder)
    manifest = _read_manifest(folder)
    report.n_files = len(manifest)
    for rel, digest in sorted(manifest.items()):
        path = folder / rel
        if not path.is_file():
            report.findings.append(BundleFinding("file", rel, "missing", "listed in the manifest"))
        elif sha256_file(path) != digest:
            report.findings.append(
                BundleFinding("file", rel, "altered", "its SHA-256 is not the manifest's")
            )
    for rel in _files(folder):
        if rel != MANIFEST and rel not in manifest:
            report.findings.append(
                BundleFinding("file", rel, "extra", "not listed in the manifest")
            )
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        chosen = [Chosen(s, str(t), int(i)) for s, t, i in info["results"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{folder / INFO}: unreadable ({exc}): the bundle is damaged; write it again"
        ) from None
    wh = wh.reader()
    with wh.session() as session:
        current = bundle_rows(session, chosen)
        depths = _depths(session)
    now = {t: {row_key(r): r for r in current[t]} for t in TABLES}
    problems: dict[str, list[str]] = {}
    stored = {row_key(r) for t in TABLES for r in current[t]}
    for c in chosen:
        if (c.sweep_id, c.test, c.result_id) not in stored:
            problems.setdefault(c.ref, []).append("no longer stored in the warehouse")
    for table in TABLES:
        parquet = folder / "results" / f"{table}.parquet"
        if parquet.is_file():
            try:
                rows = pq.read_table(parquet).to_pylist()
            except (OSError, pa.ArrowException) as exc:
                rows = []
                report.findings.append(
                    BundleFinding("table", f"results/{table}.parquet", "differs", str(exc))
                )
            _compare_rows(
                f"results/{table}.parquet", {row_key(r): r for r in rows}, now[table], problems
            )
        path = folder / "results" / f"{table}.csv"
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as fh:
                text_rows = list(csv.DictReader(fh))
            as_text = {k: {n: csv_cell(v) for n, v in r.items()} for k, r in now[table].items()}
            _compare_rows(
                f"results/{table}.csv",
                {_text_key(r): r for r in text_rows if _text_key(r) is not None},  # type: ignore[misc]
                as_text,  # type: ignore[arg-type]
                problems,
            )
    for rel, text in latex_tables(current, depths).items():
        path = folder / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != _strip_stamp(text, path):
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
    for c in dict.fromkeys(pairs):
        verdict = verdicts.get(c)
        if verdict is not None and verdict.status != REPRODUCED:
            problems.setdefault(f"{c[0]}:{c[1]}", []).append(
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


__all__ = [
    "BundleFinding",
    "BundleInfo",
    "BundleReport",
    "build_bundle",
    "choose_results",
    "draw_figures",
    "verify_bundle",
]
