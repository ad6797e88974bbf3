"""`semwh bundle`: the numbers and figures of a paper in one folder, with proof of where they
came from; `semwh verify --bundle` checks such a folder against itself and the warehouse.

A bundle holds

* ``results/comparisons``, ``results/recovery``, ``results/differences`` (``.csv`` and
  ``.parquet``): every column the warehouse stores for each chosen result, with the test, the
  sweep it was chosen through and that sweep's ``p_fdr``;
* ``tables/*.tex``: one booktabs table per measure and target (word space, RDM, ...);
* ``figures/``: the figures of the chosen sweeps (PNG at 300 dpi, PDF, SVG, the CSV of each
  one's numbers) and their captions, drawn by :func:`draw_figures`;
* ``definitions/``: the chosen sweeps (options, seeds, family sizes) and the analysis runs of
  the results (parameters, seeds, recorded versions, input hashes, device);
* ``inputs.json``: the content SHA-256 of every space the results depend on, the hashes the
  results were computed from and the SHA-256 of each of the spaces' vector files;
* ``versions.json``: semwh's and the libraries' versions where the bundle was written;
* ``bundle.json`` (what was chosen), ``README.md`` and ``MANIFEST.sha256`` (``sha256sum``
  format, every other file).

The folder is written beside ``OUT`` under a hidden name and renamed into place when complete,
so an interrupted bundle never leaves a half bundle at ``OUT``. :mod:`semwh.results.bundle_check`
checks a bundle (``semwh verify --bundle``); :mod:`semwh.results.latex` writes its tables.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from semwh.errors import ConfigError, InputError, NotFoundError, OutputError
from semwh.results.latex import depths, latex_tables
from semwh.runs.families import members_of
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
    #: SHA-256 of MANIFEST.sha256: quoted in a paper, it seals every file of the bundle (a
    #: file edited with its manifest line edited to match changes it).
    manifest_sha256: str = ""


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
        ConfigError: A malformed ``TEST:ID``, or a named sweep that is running or failed.
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
            parts = [f"sweep {i}" for i in dict.fromkeys(sweep_ids)]
            parts += [f"result {r}" for r in dict.fromkeys(results)]
            how = ", ".join(parts)
        for sweep_id in dict.fromkeys(sweep_ids):
            found = session.get(Sweep, sweep_id)
            if found is None:
                raise NotFoundError(f"--sweep {sweep_id}: no such sweep (see the sweeps table)")
            if found.status in ("running", "failed"):
                # Its members are part of a family: their FDR is not that of the whole sweep.
                raise ConfigError(
                    f"--sweep {sweep_id} is {found.status}, not complete: its FDR family is "
                    "incomplete; let it finish (run the same `semwh analyze sweep` again), or "
                    "bundle single results with --result"
                )
            members = members_of(session, sweep_id)
            if not members:
                raise NotFoundError(f"--sweep {sweep_id}: the sweep has no members")
            out += [Chosen(sweep_id, m.test, m.result_id) for m in members]
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
    mapper: Any = sa_inspect(model)
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

    The layer curves of the chosen sweeps (the warehouse's current curves when results were
    chosen by id only), each as PNG (300 dpi), PDF, SVG and the CSV of its numbers, drawn by
    the report's :func:`~semwh.results.report.write_figures`, with ``CAPTIONS.md`` beside
    them.
    """
    from semwh.results.report import write_figures

    sweep_ids = sorted({c.sweep_id for c in chosen if c.sweep_id is not None})
    try:
        drawn = write_figures(wh, folder, sweep_ids=sweep_ids)
    except NotFoundError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return f"no figures: {exc}"
    captions = [f"# Figures\n\n{len(drawn)} figure(s); each as .png, .pdf, .svg and .csv.\n"]
    for figure in drawn:
        names = ", ".join(f"`{path.name}`" for path in figure.paths)
        captions.append(f"## {figure.title}\n\n{names}\n\n{figure.caption}\n")
    (folder / "CAPTIONS.md").write_text("\n".join(captions), encoding="utf-8")
    where = f"sweep(s) {', '.join(map(str, sweep_ids))}" if sweep_ids else "current curves"
    return f"{len(drawn)} figure(s) with CAPTIONS.md (layer curves of the {where})"


# Reading ----------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, str]:
    """A bundle's manifest (path -> SHA-256), every path checked to lie inside the bundle.

    Raises:
        NotFoundError: No bundle (folder) or no manifest there.
        InputError: A damaged or forged manifest (a link out, not UTF-8, a bad line, a path
            outside the bundle).
    """
    path = folder / MANIFEST
    if folder.exists() and not folder.is_dir():
        raise NotFoundError(f"no bundle at {folder}: it is a file; give the bundle's folder")
    if not folder.is_dir():
        raise NotFoundError(f"no bundle at {folder}: the folder does not exist")
    if not path.is_file():
        raise NotFoundError(
            f"no bundle at {folder}: it has no {MANIFEST} (write one with `semwh bundle`)"
        )
    if not inside(folder, path):
        raise InputError(f"{path} is a link to a file outside the bundle: write the bundle again")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}): the manifest is "
            "damaged; write the bundle again"
        ) from exc
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if match is None:
            raise InputError(
                f"{path}, line {number}: not a sha256sum line (HASH  PATH): the manifest is "
                "damaged; write the bundle again"
            )
        rel = match.group(2)
        parts = PurePosixPath(rel).parts
        if rel.startswith(("/", "\\")) or ".." in parts or "\\" in rel or ":" in parts[0]:
            raise InputError(
                f"{path}, line {number}: {rel!r} is not a path inside the bundle (absolute or "
                "with '..'): the manifest is damaged or forged; nothing outside the bundle is "
                "read"
            )
        entries[rel] = match.group(1)
    return entries


def inside(folder: Path, path: Path) -> bool:
    """Whether ``path`` is a file of ``folder`` once links are followed (a link out of the
    bundle is never read)."""
    return path.resolve().is_relative_to(folder.resolve())


# Writing --------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_of(folder: Path) -> list[str]:
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
        if target in resolved.parents:
            raise OutputError(
                f"refusing to write the bundle into {out}: the warehouse ({root}) is inside "
                "it; choose a folder outside the warehouse"
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
        try:
            listed = set(read_manifest(target)) | {MANIFEST}
        except InputError as exc:
            raise OutputError(
                f"{out} holds a damaged bundle ({exc}); --force only replaces an intact "
                "bundle: move the folder away first"
            ) from exc
        others = [rel for rel in files_of(target) if rel not in listed]
        if others:
            raise OutputError(
                f"{out} holds files that are not part of its bundle ({', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): --force only replaces a previous "
                "bundle and nothing else; move them away first"
            )
    return target


def _remove_stale(target: Path) -> None:
    """Hidden folders of earlier bundles to ``target`` whose process is gone: a half-written
    bundle, or a replaced one whose process was killed just after setting it aside."""
    hidden = [
        *target.parent.glob(f".{target.name}.partial-*"),
        *target.parent.glob(f".{target.name}.old-*"),
    ]
    for path in hidden:
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
    ("figures/", "{figures}"),
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
    (
        "MANIFEST.sha256",
        "SHA-256 of every other file (sha256sum -c MANIFEST.sha256); its own SHA-256, which "
        "`semwh bundle` and `semwh verify --bundle` print, is the one to quote in a paper",
    ),
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
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:
        raise OutputError(
            f"cannot write the bundle {out}: {exc.strerror or exc} ({exc.filename}); choose a "
            "folder whose parent is a folder you can write"
        ) from exc
    try:
        with wh.session() as session:
            rows = bundle_rows(session, chosen)
            tables = latex_tables(rows, depths(session))
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
            draw_figures(wh, tmp / "figures", chosen)
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
        listed = files_of(tmp)
        (tmp / MANIFEST).write_text(
            "".join(f"{sha256_file(tmp / rel)}  {rel}\n" for rel in listed), encoding="utf-8"
        )
        # Checked again: another bundle or other files may have arrived at OUT meanwhile.
        check_bundle_folder(wh, out, force=force)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleInfo(
        target, [*listed, MANIFEST], len(chosen), how, note, sha256_file(target / MANIFEST)
    )


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


__all__ = ["BundleInfo", "Chosen", "build_bundle", "choose_results", "draw_figures"]
