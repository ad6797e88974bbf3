"""`semwh verify`: prove that stored results still reproduce from the warehouse's own files.

For each chosen result: every vector file behind its two inputs is checked against its record
(size, row count, SHA-256); the inputs' content hashes must still be the ones the result was
computed from; then the result is recomputed from its recorded parameters and seed and
compared with the stored numbers, bit for bit. Each result is reported as

* ``reproduced``: every stored number came out exactly the same;
* ``drifted``: the inputs are the same but a number differs (by how much, and which tracked
  library versions or algorithm version differ from the recorded ones);
* ``inputs changed``: a vector file differs from its record, or a space's content is no
  longer what the result was computed from (the file or the space is named);
* ``superseded``: the result was computed by a method semwh no longer uses for that kind of
  input (an RSA or 2 vs 2 against an RDM space stored before per-subject evaluation, which
  compared with minus the subjects' mean RDM); the detail gives the command that computes
  it with the current method. It is not recomputed: its numbers answer another question.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh import measures
from semwh.errors import ConfigError, NotFoundError, SemwhError
from semwh.measures import analysis_version
from semwh.runs import result_rows
from semwh.runs.comparison import plan_comparison, run_comparison
from semwh.runs.families import members_of
from semwh.runs.levels import Items
from semwh.runs.provenance import concepts_sha256, library_versions
from semwh.runs.recovery import recovery_inputs, run_recovery_layer, top1_predictions
from semwh.runs.repair import Damage, check_all
from semwh.vectors import SpaceVectors, load_space
from semwh.vectors.store import content_sha256, file_problem
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    Result,
    ResultDiff,
    ResultRecovery,
    Space,
    VectorFile,
)

REPRODUCED = "reproduced"
DRIFTED = "drifted"
INPUTS_CHANGED = "inputs changed"
SUPERSEDED = "superseded"
NOT_INSTALLED = "measure not installed"


def verified_tests() -> tuple[str, ...]:
    """What verify recomputes: every registered measure, recovery and differences."""
    others = [name for name in measures.names() if name not in ("rsa", "2v2")]
    return ("rsa", "2v2", "recovery", *others, "diff")


_OTHER_MODELS: dict[str, Any] = {"recovery": ResultRecovery, "diff": ResultDiff}


def _row(session: Session, test: str, result_id: int) -> Any:
    """The stored row of ``test`` with ``result_id`` (None: none of that test)."""
    if test in _OTHER_MODELS:
        return session.get(_OTHER_MODELS[test], result_id)
    return result_rows.get_comparison(session, test, result_id)


@dataclass(frozen=True)
class Verdict:
    """What verifying one stored result found."""

    test: str
    result_id: int
    space_a: str
    space_b: str
    status: str
    detail: str
    max_abs_diff: float | None = None


@dataclass
class VerifyReport:
    """Verdicts of every checked result, and the vector files that differ from their record."""

    verdicts: list[Verdict] = field(default_factory=list)
    bad_files: dict[str, str] = field(default_factory=dict)
    # --all: every vector file and image re-hashed, each damaged one with its repair.
    damage: list[Damage] = field(default_factory=list)
    n_files: int = 0
    n_images: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.bad_files
            and not self.damage
            and all(v.status == REPRODUCED for v in self.verdicts)
        )

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {
                    "test": v.test,
                    "result_id": v.result_id,
                    "space_a": v.space_a,
                    "space_b": v.space_b,
                    "status": v.status,
                    "max_abs_diff": v.max_abs_diff,
                    "detail": v.detail,
                }
                for v in self.verdicts
            ],
            schema=pa.schema(
                [
                    ("test", pa.string()),
                    ("result_id", pa.int64()),
                    ("space_a", pa.string()),
                    ("space_b", pa.string()),
                    ("status", pa.string()),
                    ("max_abs_diff", pa.float64()),
                    ("detail", pa.string()),
                ]
            ),
        )

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for v in self.verdicts:
            counts[v.status] = counts.get(v.status, 0) + 1
        parts = [f"{n} {status}" for status, n in sorted(counts.items())] or ["no results"]
        files = f"; {len(self.bad_files)} vector file(s) differ from their record" * bool(
            self.bad_files
        )
        if self.n_files or self.n_images:
            files += (
                f"; re-hashed {self.n_files} vector file(s) and {self.n_images} image(s): "
                f"{len(self.damage) or 'none'} damaged"
            )
        return f"verified {len(self.verdicts)} result(s): {', '.join(parts)}{files}"


def parse_result_ref(text: str) -> tuple[str, int]:
    """``TEST:ID`` (e.g. ``2v2:17``) as (test, result_id). TEST may also name a measure no
    longer installed whose results are stored (verify reports them as not installed)."""
    test, sep, number = text.partition(":")
    tests = verified_tests()
    if not sep or not test or not number.strip().isdigit():
        raise ConfigError(
            f"--result {text!r}: expected TEST:ID with TEST one of {', '.join(tests)} (e.g. 2v2:17)"
        )
    return test, int(number)


def chosen_results(
    wh: Warehouse,
    *,
    sweep_id: int | None = None,
    result: str | None = None,
    every: bool = False,
) -> list[tuple[str, int]]:
    """The (test, result_id) pairs one of ``--sweep``, ``--result`` or ``--all`` names."""
    if sum([sweep_id is not None, result is not None, every]) != 1:
        raise ConfigError("verify needs exactly one of --sweep ID, --result TEST:ID or --all")
    with wh.session() as session:
        if result is not None:
            test, result_id = parse_result_ref(result)
            if _row(session, test, result_id) is None:
                table = f"results_{test}" if test in _OTHER_MODELS else "results"
                known = (
                    "" if test in verified_tests() else f" ({test!r} is not a registered measure)"
                )
                raise NotFoundError(f"no {test} result {result_id} (see {table}){known}")
            return [(test, result_id)]
        if sweep_id is not None:
            members = members_of(session, sweep_id)
            if not members:
                raise NotFoundError(f"sweep {sweep_id} has no members (see the sweeps table)")
            return [(m.test, m.result_id) for m in members]
        out: list[tuple[str, int]] = []
        for test in verified_tests():
            if test in _OTHER_MODELS:
                model = _OTHER_MODELS[test]
                query = select(model.result_id).order_by(model.result_id)
            else:
                query = (
                    select(Result.result_id)
                    .where(Result.measure == test)
                    .order_by(Result.result_id)
                )
            out.extend((test, int(i)) for i in session.scalars(query).all())
        # Results of measures no longer registered here are listed too (as not installed).
        registered = verified_tests()
        stray = session.execute(
            select(Result.measure, Result.result_id)
            .where(Result.measure.not_in(registered))
            .order_by(Result.measure, Result.result_id)
        ).all()
        out.extend((str(m), int(i)) for m, i in stray)
        return out


class _Checker:
    """Checks vector files once each and loads each space once per verification."""

    def __init__(self, wh: Warehouse, report: VerifyReport) -> None:
        self.wh = wh
        self.report = report
        self.file_state: dict[str, str | None] = {}
        self.spaces: dict[str, SpaceVectors] = {}
        self.versions_now = library_versions()

    def check_files(self, files: Iterable[VectorFile], space: str) -> str | None:
        """The first problem with ``files`` (size, SHA-256, rows), naming file and space."""
        root = self.wh.vectors
        for f in files:
            if f.path not in self.file_state:
                self.file_state[f.path] = file_problem(self.wh, f)
                if self.file_state[f.path] is not None:
                    self.report.bad_files[f.path] = str(self.file_state[f.path])
            problem = self.file_state[f.path]
            if problem is not None:
                return f"vector file {root.show(f.path)} of space {space!r}: {problem}"
        return None

    def space_problem(self, session: Session, name: str, recorded: str | None) -> str | None:
        """Why space ``name`` is not the input a result was computed from (None: it is)."""
        space = session.scalar(select(Space).where(Space.name == name))
        if space is None:
            return f"space {name!r} no longer exists"
        if recorded is None or space.content_sha256 != recorded:
            return (
                f"space {name!r} was replaced: its content is now "
                f"{(space.content_sha256 or 'unhashed')[:12]}..., the result was computed from "
                f"{(recorded or 'an unrecorded version')[:12]}..."
            )
        files = session.scalars(
            select(VectorFile).where(
                VectorFile.space_id == space.space_id,
                VectorFile.kind.in_(["concepts", "images"]),
            )
        ).all()
        problem = self.check_files(files, name)
        if problem is not None:
            return problem
        per_image = any(f.kind == "images" for f in files)
        if name not in self.spaces and (not per_image or any(f.kind == "concepts" for f in files)):
            self.spaces[name] = load_space(self.wh, name)
        # Ingested at the image level: its content is that of its per-image rows.
        loaded = load_space(self.wh, name, "image") if per_image else self.spaces[name]
        if content_sha256(loaded.concept_ids, loaded.matrix) != space.content_sha256:
            return f"space {name!r}: its files no longer hash to its recorded content"
        return None

    def version_notes(
        self, run: AnalysisRun | None, test: str, stored_version: int, target: str | None = None
    ) -> str:
        notes = []
        current = analysis_version(test, target)
        if stored_version != current:
            notes.append(
                f"computed by {test} algorithm version {stored_version}, semwh now runs "
                f"version {current}"
            )
        recorded = json.loads(run.library_versions) if run is not None else {}
        changed = [
            f"{lib} {recorded.get(lib)} -> {now}"
            for lib, now in self.versions_now.items()
            if lib in recorded and recorded.get(lib) != now
        ]
        if changed:
            notes.append("library versions differ from the recorded ones: " + ", ".join(changed))
        return "; ".join(notes) or "library versions are the recorded ones"


def _diff(stored: Sequence[float | None], fresh: Sequence[float | None]) -> float | None:
    """Largest absolute difference (inf where one side is missing); None when identical."""
    worst = 0.0
    same = True
    for a, b in zip(stored, fresh, strict=True):
        if a is None and b is None:
            continue
        if a is None or b is None:
            return float("inf")
        if a != b and not (np.isnan(a) and np.isnan(b)):
            same = False
            worst = max(worst, abs(float(a) - float(b)))
    return None if same else worst


def _verify_comparison(checker: _Checker, session: Session, test: str, row: Result) -> Verdict:
    def verdict(status: str, detail: str, diff: float | None = None) -> Verdict:
        return Verdict(test, row.result_id, row.space_a, row.space_b, status, detail, diff)

    for name, recorded in ((row.space_a, row.space_a_sha256), (row.space_b, row.space_b_sha256)):
        problem = checker.space_problem(session, name, recorded)
        if problem is not None:
            return verdict(INPUTS_CHANGED, problem)
    items = Items()
    if row.level == "image":
        items = Items("image", row.permute, row.resample)

    def load(name: str) -> SpaceVectors:
        """A space at the result's level (files checked against their records on read)."""
        key = name if items.level == "concept" else f"{name}\0{items.level}"
        if key not in checker.spaces:
            checker.spaces[key] = load_space(checker.wh, name, items.level)
        return checker.spaces[key]

    try:
        a, b = load(row.space_a), load(row.space_b)
    except SemwhError as exc:
        return verdict(INPUTS_CHANGED, str(exc))
    superseded = _superseded_method(test, row, b)
    if superseded is not None:
        return verdict(SUPERSEDED, superseded)
    options = result_rows.stored_options(test, row)
    hashes = {row.space_a: row.space_a_sha256, row.space_b: row.space_b_sha256}
    concept_ids = None
    if concepts_sha256(sorted(set(a.concept_ids) & set(b.concept_ids))) != row.concepts_sha256:
        # A grid's cell: computed over the concepts every space of its grid shares.
        from semwh.runs.grid import grid_concepts

        concept_ids = grid_concepts(session, load, test, row.result_id, row.concepts_sha256)
    try:
        spec = plan_comparison(a, b, options, hashes, concept_ids=concept_ids, items=items)
        record = run_comparison(spec)
    except SemwhError as exc:
        return verdict(DRIFTED, f"recomputing fails now: {exc}", float("inf"))
    null = result_rows.null_values(session, test, row.result_id) or []
    fresh_null = [] if record.null is None else [float(v) for v in record.null]
    stored: list[float | None] = [
        row.statistic,
        row.p_value,
        row.ci_low,
        row.ci_high,
        row.null_mean,
        row.null_q95,
    ]
    fresh: list[float | None] = [
        record.statistic,
        record.p_value,
        record.ci_low,
        record.ci_high,
        record.null_mean,
        record.null_q95,
    ]
    if getattr(row, "target", None):
        subject_stored, subject_fresh = _subject_numbers(session, test, row, record)
        stored += subject_stored
        fresh += subject_fresh
    if len(null) != len(fresh_null) or len(stored) != len(fresh):
        diff: float | None = float("inf")
    else:
        diff = _diff([*stored, *null], [*fresh, *fresh_null])
    run = session.get(AnalysisRun, row.analysis_id)
    notes = checker.version_notes(run, test, row.analysis_version, getattr(row, "target", None))
    if diff is None:
        return verdict(REPRODUCED, f"statistic, p-value and null identical; {notes}")
    return verdict(DRIFTED, f"stored numbers differ by up to {diff:.3g}; {notes}", diff)


_INFERENCE_NUMBERS = ("statistic", "p_value", "ci_low", "ci_high", "se")


def _subject_numbers(
    session: Session, test: str, row: Any, record: Any
) -> tuple[list[float | None], list[float | None]]:
    """A target-with-subjects result's own numbers, stored and recomputed, in one order: each
    subject's statistic, the ceiling, every test and interval over subjects or both."""
    extra = record.extra or {}
    stored: list[float | None] = [
        v for _, v in result_rows.subject_values(session, test, row.result_id)
    ]
    fresh: list[float | None] = [float(v) for v in extra.get("subject_values") or []]
    nothing: list[float | None] = [float("nan")]
    ceiling = extra.get("ceiling")
    stored += [row.ceiling_lower, row.ceiling_upper]
    fresh += [None, None] if ceiling is None else [ceiling.lower, ceiling.upper]
    _, table = result_rows.subject_tables(session, test, row.result_id)
    kept = {r["method"]: r for r in table.to_pylist() if r["method"] != "permutation"}
    again = {
        r.method: r for r in result_rows.inference_rows(test, row.result_id, len(fresh), extra)
    }
    for method in sorted(set(kept) | set(again)):
        if method not in kept or method not in again:
            return stored, fresh + nothing  # a test or interval appeared or vanished
        stored += [kept[method][c] for c in _INFERENCE_NUMBERS]
        fresh += [getattr(again[method], c) for c in _INFERENCE_NUMBERS]
    return stored, fresh


def _superseded_method(test: str, row: Any, b: SpaceVectors) -> str | None:
    """Why a stored RSA or 2 vs 2 row answers a question semwh no longer asks (None: it does
    not): one against an RDM space stored without its per-subject target."""
    if test not in ("rsa", "2v2") or b.kind != "rdm" or getattr(row, "target", None):
        return None
    option = (
        f" --method {row.method}"
        if test == "rsa"
        else f" --distance {row.distance} --tie-tol {row.tie_tol}"
    )
    if row.bootstrap:
        option += f" --bootstrap {row.bootstrap}"
    return (
        f"computed by {test} algorithm version {row.analysis_version} against minus the "
        f"subjects' mean RDM of {row.space_b!r}; semwh now compares with each subject's RDM "
        f"and averages (version {analysis_version(test, 'subjects:none')}, the scale of the "
        f"noise ceiling): recompute with `semwh analyze {test} --a {shlex.quote(row.space_a)} "
        f"--b {shlex.quote(row.space_b)} --similarity {row.similarity}{option} "
        f"--permutations {row.n_permutations}"
        + (f" --seed {row.seed}" if row.seed is not None else "")
        + "`"
    )


def _verify_recovery(checker: _Checker, session: Session, row: ResultRecovery) -> Verdict:
    def verdict(status: str, detail: str, diff: float | None = None) -> Verdict:
        return Verdict("recovery", row.result_id, row.space_a, row.space_b, status, detail, diff)

    for name, recorded in ((row.space_a, row.space_a_sha256), (row.space_b, row.space_b_sha256)):
        problem = checker.space_problem(session, name, recorded)
        if problem is not None:
            return verdict(INPUTS_CHANGED, problem)
    layer = session.scalar(select(Space).where(Space.name == row.space_a))
    assert layer is not None
    shards = session.scalars(
        select(VectorFile).where(VectorFile.layer_id == layer.layer_id, VectorFile.kind == "images")
    ).all()
    problem = checker.check_files(shards, row.space_a)
    if problem is not None:
        return verdict(INPUTS_CHANGED, problem)
    inputs = recovery_inputs(
        checker.wh, layer, checker.spaces[row.space_b], top1_predictions(checker.wh, row.model)
    )
    if inputs.inputs_sha256 != row.inputs_sha256:
        return verdict(
            INPUTS_CHANGED,
            f"the image vectors or predictions of {row.model!r} differ from the ones recorded",
        )
    try:
        fresh = run_recovery_layer(inputs).result
    except SemwhError as exc:
        return verdict(DRIFTED, f"recomputing fails now: {exc}", float("inf"))

    def opt(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    stored = [float(row.n_images), float(row.n_success), row.accuracy, row.p_value]
    stored += [row.visual_accuracy, row.mean_rank_true, row.median_rank_true]
    now = [float(fresh.n_images), float(fresh.n_success), opt(fresh.success_rate)]
    now += [opt(fresh.p_value), opt(fresh.visual_success_rate), opt(fresh.mean_rank)]
    now += [opt(fresh.median_rank)]
    diff = _diff(stored, now)
    notes = checker.version_notes(
        session.get(AnalysisRun, row.analysis_id), "recovery", row.analysis_version
    )
    if diff is None:
        return verdict(REPRODUCED, f"counts, rates and p-values identical; {notes}")
    return verdict(DRIFTED, f"stored numbers differ by up to {diff:.3g}; {notes}", diff)


def _verify_diff(checker: _Checker, session: Session, row: ResultDiff) -> Verdict:
    """Recompute a stored difference from its two results' inputs."""
    from semwh.analyze.difference import paired_difference
    from semwh.runs.difference import diff_inputs, weighted_statistic

    def verdict(status: str, detail: str, diff: float | None = None) -> Verdict:
        return Verdict("diff", row.result_id, row.space_a, row.space_b, status, detail, diff)

    for name, recorded in ((row.space_a, row.space_a_sha256), (row.space_b, row.space_b_sha256)):
        problem = checker.space_problem(session, name, recorded)
        if problem is not None:
            return verdict(INPUTS_CHANGED, problem)
    try:
        inputs = diff_inputs(
            checker.wh,
            f"{row.first_test}:{row.first_result_id}",
            f"{row.second_test}:{row.second_result_id}",
        )
        first, second = (weighted_statistic(spec) for spec in inputs.specs)
        fresh = paired_difference(
            first,
            second,
            row.n_concepts,
            n_bootstrap=row.n_bootstrap,
            n_permutations=row.n_permutations,
            level=row.level,
            seed=int(row.seed or 0),
        )
    except SemwhError as exc:
        return verdict(INPUTS_CHANGED, f"its results cannot be rebuilt now: {exc}")

    def opt(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    null = result_rows.null_values(session, "diff", row.result_id) or []
    stored = [row.difference, row.ci_low, row.ci_high, row.p_value, *null]
    now = [fresh.difference, opt(fresh.ci_low), opt(fresh.ci_high), fresh.p_value]
    now += [float(v) for v in fresh.null]
    diff = float("inf") if len(stored) != len(now) else _diff(stored, now)
    notes = checker.version_notes(
        session.get(AnalysisRun, row.analysis_id), "diff", row.analysis_version
    )
    if diff is None:
        return verdict(REPRODUCED, f"difference, interval, p-value and null identical; {notes}")
    return verdict(DRIFTED, f"stored numbers differ by up to {diff:.3g}; {notes}", diff)


def verify(
    wh: Warehouse,
    *,
    sweep_id: int | None = None,
    result: str | None = None,
    every: bool = False,
) -> VerifyReport:
    """Check files and recompute the results of one sweep, one result, or all of them.

    With ``every``, every registered vector file and every image is also re-hashed, and
    each damaged one is reported with the command that repairs it. Only reads: works on a
    read-only warehouse.

    Raises:
        ConfigError: Not exactly one of ``sweep_id``, ``result``, ``every``; a bad reference.
        NotFoundError: An unknown sweep or result.
    """
    # Reads only: an archived warehouse (a read-only mount, no write permission) verifies.
    wh = wh.reader()
    chosen = chosen_results(wh, sweep_id=sweep_id, result=result, every=every)
    report = VerifyReport()
    if every:
        checked = check_all(wh)
        report.damage, report.n_files, report.n_images = (
            checked.damage,
            checked.n_files,
            checked.n_images,
        )
    return recompute(wh, chosen, report)


def recompute(
    wh: Warehouse, chosen: Sequence[tuple[str, int]], report: VerifyReport | None = None
) -> VerifyReport:
    """Recompute the ``(test, result_id)`` results of ``chosen`` from the warehouse and add a
    verdict for each to ``report`` (a new one by default); an id of no stored row is left out.
    Only reads."""
    wh = wh.reader()
    report = VerifyReport() if report is None else report
    checker = _Checker(wh, report)
    with wh.session() as session:
        for test, result_id in chosen:
            row = _row(session, test, result_id)
            if row is None:
                continue
            if test == "recovery":
                report.verdicts.append(_verify_recovery(checker, session, row))
            elif test not in ("diff", *measures.names()):
                report.verdicts.append(
                    Verdict(
                        test,
                        result_id,
                        row.space_a,
                        row.space_b,
                        NOT_INSTALLED,
                        f"measure {test!r} is not registered here: install the package that "
                        "provides it to recompute this result (its stored numbers stay "
                        "queryable)",
                    )
                )
            elif test == "diff":
                report.verdicts.append(_verify_diff(checker, session, row))
            else:
                report.verdicts.append(_verify_comparison(checker, session, test, row))
    return report
