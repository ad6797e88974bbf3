"""`semwh diff OTHER_WAREHOUSE`: the results of two warehouses side by side (a rerun on
another GPU, in bf16, with a new torch), not the difference of two results of one warehouse
(that is ``semwh analyze diff``).

Results pair up by what they answer: the measure, both spaces, the measure's options (their
hash), the concept set and the level (with the target's pooling and the image level's scheme);
1 vs 2 recovery results by their spaces, similarity and concept set. Where a warehouse holds
several rows of one key (reruns with other seeds or permutations), its newest counts. Each
pair is

* ``identical``: statistic, p-value, interval and null summary equal bit for bit;
* ``within tolerance``: none of them differs by more than the tolerance;
* ``different``: one differs by more (the row says by how much);

and results of one warehouse only are listed as such. Beside each pair: whether the inputs'
content hashes differ; whether the algorithm versions, the semwh and library versions their
analysis runs recorded (numpy, scipy, torch) differ; and whether the devices differ: the
analysis's (recorded as ``cpu`` or ``cuda``, not the card's model) and, for a layer space,
its extraction's (device, precision and the versions the extraction recorded). What a
warehouse did not record is said to be "not recorded", never guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh.config import load_settings
from semwh.errors import ConfigError, WarehouseError
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import check_revision
from semwh.warehouse.models import (
    AnalysisRun,
    ExtractionRun,
    Result,
    ResultRecovery,
    Space,
    VectorFile,
)

IDENTICAL = "identical"
WITHIN = "within tolerance"
DIFFERENT = "different"
ONLY_HERE = "only in this warehouse"
ONLY_OTHER = "only in the other warehouse"
NOT_RECORDED = "not recorded"

_COMPARED = ("statistic", "p_value", "ci_low", "ci_high", "null_mean", "null_q95")


@dataclass(frozen=True)
class Side:
    """One warehouse's result of a pair, with what its provenance records."""

    result_id: int
    numbers: dict[str, float | None]
    hashes: tuple[str | None, str | None]
    semwh_version: str | None
    libraries: dict[str, Any]
    device: str | None
    extraction: tuple[str | None, dict[str, Any]] | None
    seed: int | None
    n_permutations: int
    analysis_version: int | None


@dataclass(frozen=True)
class PairDiff:
    """One result key and how the two warehouses' results of it compare."""

    measure: str
    space_a: str
    space_b: str
    level: str
    options: str
    status: str
    here: Side | None
    other: Side | None
    max_abs_diff: float | None
    inputs: str
    versions: str
    device: str
    notes: str

    def row(self) -> dict[str, Any]:
        def num(side: Side | None, name: str) -> float | None:
            return None if side is None else side.numbers.get(name)

        def delta(name: str) -> float | None:
            a, b = num(self.here, name), num(self.other, name)
            return None if a is None or b is None else abs(a - b)

        return {
            "measure": self.measure,
            "space_a": self.space_a,
            "space_b": self.space_b,
            "level": self.level,
            "options": self.options,
            "status": self.status,
            "result_id": None if self.here is None else self.here.result_id,
            "other_result_id": None if self.other is None else self.other.result_id,
            "statistic": num(self.here, "statistic"),
            "other_statistic": num(self.other, "statistic"),
            "diff_statistic": delta("statistic"),
            "p_value": num(self.here, "p_value"),
            "other_p_value": num(self.other, "p_value"),
            "diff_p_value": delta("p_value"),
            "max_abs_diff": self.max_abs_diff,
            "inputs": self.inputs,
            "versions": self.versions,
            "device": self.device,
            "notes": self.notes,
        }


_SCHEMA = pa.schema(
    [
        ("measure", pa.string()),
        ("space_a", pa.string()),
        ("space_b", pa.string()),
        ("level", pa.string()),
        ("options", pa.string()),
        ("status", pa.string()),
        ("result_id", pa.int64()),
        ("other_result_id", pa.int64()),
        ("statistic", pa.float64()),
        ("other_statistic", pa.float64()),
        ("diff_statistic", pa.float64()),
        ("p_value", pa.float64()),
        ("other_p_value", pa.float64()),
        ("diff_p_value", pa.float64()),
        ("max_abs_diff", pa.float64()),
        ("inputs", pa.string()),
        ("versions", pa.string()),
        ("device", pa.string()),
        ("notes", pa.string()),
    ]
)


#: The columns of the terminal table of a diff.
COMPACT = (
    "measure",
    "space_a",
    "space_b",
    "level",
    "status",
    "diff_statistic",
    "diff_p_value",
    "inputs",
    "versions",
    "device",
    "notes",
)


@dataclass
class WarehouseDiff:
    """Every result key of two warehouses and how they compare."""

    here: Path
    other: Path
    tolerance: float
    pairs: list[PairDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every result is in both and none differs beyond the tolerance."""
        return all(p.status in (IDENTICAL, WITHIN) for p in self.pairs)

    def table(self, *, compact: bool = False) -> pa.Table:
        """One row per result key; ``compact``: the columns a terminal table has room for
        (no options, result ids or the two sides' numbers, only their differences)."""
        table = pa.Table.from_pylist([p.row() for p in self.pairs], schema=_SCHEMA)
        return table.select(list(COMPACT)) if compact else table

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.status] = out.get(p.status, 0) + 1
        return out

    def summary(self) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts().items())) or "no results"
        inputs = sum(p.inputs != "same" for p in self.pairs if p.here and p.other)
        return (
            f"diff {self.here} against {self.other} (tolerance {self.tolerance:g}): {parts}; "
            f"{inputs} pair(s) computed from inputs whose content differs"
        )


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Reader:
    """The results of one warehouse, keyed, with their provenance."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.runs: dict[int, AnalysisRun] = {
            r.analysis_id: r for r in session.scalars(select(AnalysisRun)).all()
        }
        self.extractions: dict[str, tuple[str | None, dict[str, Any]] | None] = {}

    def extraction(self, space_name: str) -> tuple[str | None, dict[str, Any]] | None:
        """Device and versions of the newest extraction behind a layer space (None: not a
        layer space, or no extraction recorded)."""
        if space_name not in self.extractions:
            found = None
            layer_id = self.session.scalar(select(Space.layer_id).where(Space.name == space_name))
            if layer_id is not None:
                run = self.session.scalar(
                    select(ExtractionRun)
                    .join(VectorFile, VectorFile.run_id == ExtractionRun.run_id)
                    .where(VectorFile.layer_id == layer_id)
                    .order_by(ExtractionRun.run_id.desc())
                    .limit(1)
                )
                if run is not None:
                    # The precision (float32, bf16, ...) is part of what made the vectors.
                    precision = _json(run.params).get("precision")
                    versions = _json(run.versions)
                    if precision is not None:
                        versions = {**versions, "precision": precision}
                    found = (run.device, versions)
            self.extractions[space_name] = found
        return self.extractions[space_name]

    def side(self, row: Any, numbers: dict[str, float | None]) -> Side:
        run = self.runs.get(row.analysis_id)
        return Side(
            result_id=int(row.result_id),
            numbers=numbers,
            hashes=(row.space_a_sha256, row.space_b_sha256),
            semwh_version=None if run is None else run.semwh_version,
            libraries={} if run is None else _json(run.library_versions),
            device=None if run is None else run.device,
            extraction=self.extraction(row.space_a),
            seed=row.seed,
            n_permutations=int(row.n_permutations or 0),
            analysis_version=row.analysis_version,
        )

    def keyed(self) -> dict[tuple[str | None, ...], tuple[Side, dict[str, str]]]:
        out: dict[tuple[str | None, ...], tuple[Side, dict[str, str]]] = {}
        rows = self.session.scalars(select(Result).order_by(Result.result_id)).all()
        for r in rows:
            level = r.level or "concept"
            key: tuple[str | None, ...] = (
                r.measure,
                r.space_a,
                r.space_b,
                r.options_sha256,
                r.concepts_sha256,
                level,
                str(r.target),
                str(r.permute),
                str(r.resample),
            )
            numbers = {name: getattr(r, name) for name in _COMPARED}
            label = {
                "measure": r.measure,
                "space_a": r.space_a,
                "space_b": r.space_b,
                "level": level,
                "options": json.dumps(r.options, sort_keys=True, separators=(",", ":")),
            }
            out[key] = (self.side(r, numbers), label)  # the newest row of a key wins
        recs = self.session.scalars(select(ResultRecovery).order_by(ResultRecovery.result_id))
        for rec in recs.all():
            key = (
                "recovery",
                rec.space_a,
                rec.space_b,
                rec.similarity,
                rec.concepts_sha256,
                "image",
            )
            numbers = {
                "statistic": rec.accuracy,
                "p_value": rec.p_value,
                "visual_accuracy": rec.visual_accuracy,
                "mean_rank_true": rec.mean_rank_true,
            }
            label = {
                "measure": "recovery",
                "space_a": rec.space_a,
                "space_b": rec.space_b,
                "level": "image",
                "options": json.dumps({"similarity": rec.similarity}),
            }
            out[key] = (self.side(rec, numbers), label)
        return out


def _max_diff(a: dict[str, float | None], b: dict[str, float | None]) -> float | None:
    """Largest absolute difference of the numbers both sides hold (inf where one side has a
    number the other lacks); None when all are identical."""
    worst, same = 0.0, True
    for name in a.keys() | b.keys():
        x, y = a.get(name), b.get(name)
        if x is None and y is None:
            continue
        if x is None or y is None:
            return math.inf
        if x == y or (math.isnan(x) and math.isnan(y)):
            continue
        same = False
        worst = max(worst, abs(float(x) - float(y)) if not math.isnan(x - y) else math.inf)
    return None if same else worst


def _short(h: str | None) -> str:
    return "unrecorded" if not h else f"{h[:12]}..."


def _inputs(here: Side, other: Side, label: dict[str, str]) -> str:
    notes = [
        f"{label[f'space_{side}']!r} content {_short(a)} vs {_short(b)}"
        for side, a, b in zip(("a", "b"), here.hashes, other.hashes, strict=True)
        if a != b
    ]
    return "same" if not notes else "differ: " + "; ".join(notes)


def _versions(here: Side, other: Side) -> str:
    notes = []
    if here.analysis_version != other.analysis_version:
        notes.append(f"algorithm version {here.analysis_version} vs {other.analysis_version}")
    if here.semwh_version != other.semwh_version:
        notes.append(f"semwh {here.semwh_version} vs {other.semwh_version}")
    if not here.libraries or not other.libraries:
        notes.append(
            "library versions "
            + NOT_RECORDED
            + (" here" if not here.libraries else "")
            + (" in the other" if not other.libraries else "")
        )
    else:
        for lib in sorted(here.libraries.keys() | other.libraries.keys()):
            a, b = here.libraries.get(lib), other.libraries.get(lib)
            if a != b:
                notes.append(f"{lib} {a} vs {b}")
    return "same" if not notes else "; ".join(notes)


def _device(here: Side, other: Side) -> str:
    def text(value: str | None) -> str:
        return value or NOT_RECORDED

    notes = []
    if here.device != other.device or here.device is None:
        notes.append(f"analysis {text(here.device)} vs {text(other.device)}")
    if here.extraction is not None or other.extraction is not None:
        a = here.extraction[0] if here.extraction else None
        b = other.extraction[0] if other.extraction else None
        if a != b or a is None:
            notes.append(f"extraction {text(a)} vs {text(b)}")
        va = here.extraction[1] if here.extraction else {}
        vb = other.extraction[1] if other.extraction else {}
        changed = [f"{k} {va.get(k)} vs {vb.get(k)}" for k in sorted(va.keys() | vb.keys())
                   if va.get(k) != vb.get(k)]  # fmt: skip
        if changed:
            notes.append("extraction " + ", ".join(changed))
    return "same" if not notes else "; ".join(notes)


def _other_warehouse(folder: Path) -> Warehouse:
    """The warehouse folder ``folder``, opened read-only: its own registry file, whatever
    ``SEMWH_DB`` or ``SEMWH_VECTORS`` say (they name this process's warehouse)."""
    theirs = warehouse_from_settings(load_settings(folder, environ={}))
    if not theirs.exists():
        raise WarehouseError(
            f"no warehouse at {folder} (no {theirs.registry_file or 'registry'}): give the "
            "folder of the other warehouse"
        )
    check_revision(theirs)
    return theirs.reader()


def diff_warehouses(wh: Warehouse, other: str | Path, *, tolerance: float = 0.0) -> WarehouseDiff:
    """Pair the results of ``wh`` with those of the warehouse at ``other`` (opened read-only)
    and say per pair whether they are identical, within ``tolerance`` (absolute, on every
    compared number) or different, and whether inputs, versions or devices differ.

    Raises:
        ConfigError: A negative or non-finite tolerance, or ``other`` is ``wh`` itself.
        WarehouseError: No warehouse at ``other``.
        SchemaMismatchError: ``other``'s schema is not this semwh's.
    """
    if not isinstance(tolerance, int | float) or not math.isfinite(tolerance) or tolerance < 0:
        raise ConfigError(f"--tolerance {tolerance!r}: give a number >= 0 (0: exact equality)")
    theirs = _other_warehouse(Path(other))
    mine = wh.reader()
    files = {
        w.registry_file.resolve() if w.registry_file else w.root.resolve() for w in (mine, theirs)
    }
    if len(files) == 1:
        raise ConfigError(
            f"{other} is this warehouse itself ({mine.root}): give the folder of the other "
            "warehouse (a copy or a rerun), or set --warehouse to the one to compare with it"
        )
    with mine.session() as s1, theirs.session() as s2:
        a = _Reader(s1).keyed()
        b = _Reader(s2).keyed()
    report = WarehouseDiff(mine.root, theirs.root, float(tolerance))
    for key in sorted(a.keys() | b.keys(), key=lambda k: tuple(map(str, k))):
        here, label = a.get(key, (None, None))  # type: ignore[assignment]
        there, label2 = b.get(key, (None, None))  # type: ignore[assignment]
        label = label or label2
        assert label is not None
        notes: list[str] = []
        worst: float | None = None
        if here is None or there is None:
            status = ONLY_OTHER if here is None else ONLY_HERE
            inputs = versions = device = ""
        else:
            worst = _max_diff(here.numbers, there.numbers)
            status = IDENTICAL if worst is None else WITHIN if worst <= tolerance else DIFFERENT
            if here.seed != there.seed:
                notes.append(f"seed {here.seed} vs {there.seed}")
            if here.n_permutations != there.n_permutations:
                notes.append(f"permutations {here.n_permutations} vs {there.n_permutations}")
            inputs = _inputs(here, there, label)
            versions = _versions(here, there)
            device = _device(here, there)
        report.pairs.append(
            PairDiff(
                **label,
                status=status,
                here=here,
                other=there,
                max_abs_diff=worst,
                inputs=inputs,
                versions=versions,
                device=device,
                notes="; ".join(notes),
            )
        )
    return report


def differing(report: WarehouseDiff) -> Sequence[PairDiff]:
    """The pairs that make ``report`` fail: beyond tolerance, or in one warehouse only."""
    return [p for p in report.pairs if p.status not in (IDENTICAL, WITHIN)]
