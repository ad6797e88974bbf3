"""Reads and writes of analysis results: the one place that knows the results tables.

Each stored comparison is an ``analysis_runs`` row (parameters, seed, versions, input hashes),
a ``results`` row (its measure, its options as JSON and the columns every measure shares;
the views ``results_rsa``, ``results_2v2`` and ``results_measures`` show them in the older
tables' columns) and, with permutations, its null distribution in ``permutation_nulls``, all
added in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NotRequired, TypedDict, Unpack

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh import measures
from semwh.measures import Options, analysis_version
from semwh.runs import families
from semwh.runs.provenance import (
    canonical_json,
    library_versions,
    params_sha256,
    semwh_version,
)
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.warehouse.models import (
    AnalysisRun,
    PermutationNull,
    Result,
    Result2v2,
    ResultMeasure,
    ResultRSA,
    SubjectInference,
    SubjectResult,
    options_sha256,
)

#: A stored comparison of two spaces: a ``results`` row of any measure.
ComparisonRow = Result


def result_model(test: str) -> type[Result]:
    """The row class ``test``'s results load as (all of them rows of ``results``)."""
    return ResultRSA if test == "rsa" else Result2v2 if test == "2v2" else ResultMeasure


def option_settings(opts: Options) -> dict[str, Any]:
    """The measure's own options, as ``results.options`` stores them (and hashes them into
    the reuse key): :meth:`semwh.measures.Options.settings` (RSA ``similarity`` and
    ``method``; 2 vs 2 ``similarity``, ``distance`` and ``tie_tol``; CKA ``estimator``...)."""
    return dict(opts.settings())


class RunFields(TypedDict):
    """The keywords of an ``analysis_runs`` row besides its kind and params;
    ``identity`` (default ``params``) is what gets hashed."""

    seed: int | None
    input_hashes: dict[str, Any]
    device: str | None
    seconds: float | None
    identity: NotRequired[dict[str, Any] | None]


def add_analysis_run(
    session: Session, kind: str, params: dict[str, Any], **fields: Unpack[RunFields]
) -> AnalysisRun:
    """Add an ``analysis_runs`` row (:func:`analysis_run`) and flush it."""
    run = analysis_run(kind, params, **fields)
    session.add(run)
    session.flush()
    return run


def analysis_run(kind: str, params: dict[str, Any], **fields: Unpack[RunFields]) -> AnalysisRun:
    """An ``analysis_runs`` row, not yet added (:func:`add_analysis_run`)."""
    identity = fields.get("identity")
    return AnalysisRun(
        kind=kind,
        params=canonical_json(params),
        params_sha256=params_sha256(params if identity is None else identity),
        seed=fields["seed"],
        semwh_version=semwh_version(),
        library_versions=canonical_json(library_versions()),
        input_hashes=canonical_json(fields["input_hashes"]),
        device=fields["device"],
        seconds=fields["seconds"],
        finished_at=datetime.utcnow(),
    )


def matching_rows(session: Session, spec: ComparisonSpec, *, any_seed: bool) -> list[ComparisonRow]:
    """Stored rows that answer ``spec``, newest first.

    The key is every input that changes a number: the measure, both spaces, their content
    hashes, the concept set, the measure's options (similarity, method or distance, tie
    tolerance, estimator, k, penalties: their hash), how space B is compared, the level with
    its permutation scheme and bootstrap unit, permutations,
    bootstrap size (any, for a request without a bootstrap), the algorithm's version and
    (unless ``any_seed``) the seed and, with a bootstrap, its bootstrap seed.
    """
    opts = spec.options
    settings = option_settings(opts)
    clauses: list[Any] = [
        Result.measure == opts.test,
        Result.space_a == spec.space_a,
        Result.space_b == spec.space_b,
        Result.space_a_sha256 == spec.space_a_sha256,
        Result.space_b_sha256 == spec.space_b_sha256,
        Result.concepts_sha256 == spec.concepts_sha256,
        Result.options_sha256 == options_sha256(opts.test, settings),
        Result.n_permutations == opts.permutations,
        Result.analysis_version == analysis_version(opts.test, spec.target),
        Result.target.is_(None) if spec.target is None else Result.target == spec.target,
        Result.level == spec.level,
        Result.permute == spec.permute,
        Result.resample == spec.resample,
    ]
    similarity = getattr(opts, "similarity", None)
    if similarity is not None:
        clauses.append(Result.similarity == similarity)
    # A bootstrap draws from its own stream, so a row with an interval has the statistic and
    # p-value of the same request without one and answers it too; an interval of another
    # size does not.
    if opts.bootstrap:
        clauses.append(Result.bootstrap == opts.bootstrap)
    if not any_seed:
        clauses.append(Result.seed.is_(None) if opts.seed is None else Result.seed == opts.seed)
        if opts.bootstrap:
            parent = opts.bootstrap_seed
            clauses.append(
                Result.bootstrap_seed.is_(None)
                if parent is None
                else Result.bootstrap_seed == parent
            )
    query = select(Result).where(*clauses).order_by(Result.result_id.desc())
    return list(session.scalars(query).all())


def add_comparison(session: Session, record: ResultRecord) -> ComparisonRow:
    """Add the analysis run, result row and null distribution of ``record``."""
    return add_comparisons(session, [record])[0]


def add_comparisons(session: Session, records: Sequence[ResultRecord]) -> list[ComparisonRow]:
    """Add the analysis runs, result rows and null distributions of ``records``: each table's
    rows in one batch (a few statements for the whole batch, not a few per record, which is
    what a registry on a server takes its time over)."""
    runs = [_run_of(record) for record in records]
    session.add_all(runs)
    session.flush()
    rows = [_result_of(record, run.analysis_id) for record, run in zip(records, runs, strict=True)]
    session.add_all(rows)
    session.flush()
    for record, row in zip(records, rows, strict=True):
        spec, opts = record.spec, record.spec.options
        if spec.target is not None:
            add_subject_rows(session, opts.test, row.result_id, record.extra or {})
        if record.null is not None and opts.permutations > 0:
            assert opts.seed is not None
            session.add(
                PermutationNull(
                    test=opts.test,
                    result_id=row.result_id,
                    n_permutations=opts.permutations,
                    seed=opts.seed,
                    values=json.dumps([float(v) for v in record.null]),
                )
            )
    session.flush()
    return rows


def _run_of(record: ResultRecord) -> AnalysisRun:
    spec = record.spec
    return analysis_run(
        spec.options.test,
        spec.params(),
        seed=spec.options.seed,
        input_hashes=spec.input_hashes,
        device=record.device,
        seconds=record.seconds,
    )


def _result_of(record: ResultRecord, analysis_id: int) -> ComparisonRow:
    """The ``results`` row of ``record``, not yet added."""
    spec = record.spec
    opts = spec.options
    settings = option_settings(opts)
    values: dict[str, Any] = dict(
        analysis_id=analysis_id,
        options=settings,
        options_sha256=options_sha256(opts.test, settings),
        variant=opts.metric,
        similarity=getattr(opts, "similarity", None),
        statistic=record.statistic,
        n_pairs=record.n_pairs,
        bootstrap=opts.bootstrap,
        space_a=spec.space_a,
        space_b=spec.space_b,
        n_concepts=spec.n_distinct_concepts,
        n_items=spec.n_items,
        level=spec.level,
        permute=spec.permute,
        resample=spec.resample,
        concepts_sha256=spec.concepts_sha256,
        space_a_sha256=spec.space_a_sha256,
        space_b_sha256=spec.space_b_sha256,
        p_value=record.p_value,
        n_permutations=opts.permutations,
        seed=opts.seed,
        bootstrap_seed=opts.bootstrap_seed if opts.bootstrap else None,
        analysis_version=analysis_version(opts.test, spec.target),
        null_mean=record.null_mean,
        null_q95=record.null_q95,
        ci_low=record.ci_low,
        ci_high=record.ci_high,
    )
    extra = record.extra or {}
    if spec.target is not None:
        ceiling = extra.get("ceiling")
        values.update(
            target=spec.target,
            n_subjects=len(spec.subjects or ()),
            ceiling_lower=None if ceiling is None else ceiling.lower,
            ceiling_upper=None if ceiling is None else ceiling.upper,
        )
    if opts.test == "2v2":
        assert record.n_pairs is not None and opts.tie_tol is not None
    return Result.of(opts.test, **values)


def add_subject_rows(session: Session, test: str, result_id: int, extra: dict[str, Any]) -> None:
    """Each subject's statistic and the inference over subjects of one result."""
    subjects = extra.get("subjects") or []
    for index, (subject, value) in enumerate(
        zip(subjects, extra.get("subject_values") or [], strict=True)
    ):
        session.add(
            SubjectResult(
                test=test,
                result_id=result_id,
                subject_index=index,
                subject=str(subject),
                statistic=float(value),
            )
        )
    for inference in inference_rows(test, result_id, len(subjects), extra):
        session.add(inference)


def inference_rows(
    test: str, result_id: int, n_subjects: int, extra: dict[str, Any], prefix: str = ""
) -> list[SubjectInference]:
    """The ``subject_inference`` rows of the tests and intervals in ``extra``."""
    rows = []
    for found in extra.get("tests") or []:
        rows.append(
            SubjectInference(
                test=test,
                result_id=result_id,
                method=prefix + found.method,
                units="subjects",
                statistic=found.statistic,
                p_value=found.p_value,
                n_subjects=n_subjects,
                n_resamples=found.n_resamples,
                exact=found.exact,
                note=found.note or None,
            )
        )
    for interval in (extra.get("intervals") or {}).values():
        rows.append(
            SubjectInference(
                test=test,
                result_id=result_id,
                method=prefix + interval.method,
                units=interval.units,
                statistic=None,
                p_value=interval.p_value,
                ci_low=interval.low,
                ci_high=interval.high,
                se=interval.se,
                level=interval.level,
                n_subjects=n_subjects,
                n_resamples=interval.n_resamples,
                exact=False,
            )
        )
    return rows


def subject_values(session: Session, test: str, result_id: int) -> list[tuple[str, float]]:
    """(subject, statistic) of each subject behind a result, in subject order."""
    rows = session.scalars(
        select(SubjectResult)
        .where(SubjectResult.test == test, SubjectResult.result_id == result_id)
        .order_by(SubjectResult.subject_index)
    ).all()
    return [(r.subject, r.statistic) for r in rows]


SUBJECT_INFERENCE_COLUMNS = (
    "method",
    "units",
    "statistic",
    "p_value",
    "ci_low",
    "ci_high",
    "se",
    "n_subjects",
    "n_resamples",
    "exact",
    "note",
)


def subject_tables(session: Session, test: str, result_id: int) -> tuple[pa.Table, pa.Table]:
    """A result's per-subject statistics and every inference stored for it (the concept
    permutation test included), with the units each generalises over."""
    values = subject_values(session, test, result_id)
    subjects = pa.table(
        {"subject": [s for s, _ in values], "statistic": [v for _, v in values]},
        schema=pa.schema([("subject", pa.string()), ("statistic", pa.float64())]),
    )
    records = []
    row = get_comparison(session, test, result_id) if test != "diff" else None
    if row is not None and row.n_permutations > 0:
        records.append(
            {
                "method": "permutation",
                "units": "concepts",
                "statistic": row.statistic,
                "p_value": row.p_value,
                "n_resamples": row.n_permutations,
                "n_subjects": row.n_subjects,
                "exact": False,
            }
        )
    stored = session.scalars(
        select(SubjectInference)
        .where(SubjectInference.test == test, SubjectInference.result_id == result_id)
        .order_by(SubjectInference.units, SubjectInference.method)
    ).all()
    records += [{c: getattr(r, c) for c in SUBJECT_INFERENCE_COLUMNS} for r in stored]
    schema = pa.schema(
        [
            (c, pa.string())
            if c in ("method", "units", "note")
            else (c, pa.int64())
            if c in ("n_subjects", "n_resamples")
            else (c, pa.bool_())
            if c == "exact"
            else (c, pa.float64())
            for c in SUBJECT_INFERENCE_COLUMNS
        ]
    )
    return subjects, pa.Table.from_pylist(records, schema=schema)


def stored_options(test: str, row: ComparisonRow) -> Options:
    """The options a stored result was computed with (its ``options`` column, and for a
    measure of similarities the normalisation its ``target`` records)."""
    measure = measures.get(test)
    own = dict(row.options or {})
    if measure.inputs == measures.SIMILARITIES:
        own["normalise"] = normalise_of(row.target)
    parent = getattr(row, "bootstrap_seed", None)
    # The bootstrap seed goes only where one was used (a plugin measure may not take it).
    extra = {} if parent is None else {"bootstrap_seed": parent}
    return measure.stored_options(
        own, permutations=row.n_permutations, seed=row.seed, bootstrap=row.bootstrap or 0, **extra
    )


def normalise_of(target: str | None) -> str:
    """The normalisation a stored ``target`` records (``none`` for vectors)."""
    if target is None or ":" not in target:
        return "none"
    return target.split(":", 1)[1]


def test_of(row: ComparisonRow) -> str:
    """``rsa``, ``2v2`` or the measure of a stored comparison (as families name it)."""
    return families.member_test(row)


def get_comparison(session: Session, test: str, result_id: int) -> ComparisonRow | None:
    """The stored result ``result_id`` of measure ``test`` (None: no such result)."""
    row = session.get(Result, result_id)
    return row if row is not None and row.measure == test else None


def null_values(session: Session, test: str, result_id: int) -> list[float] | None:
    row = session.get(PermutationNull, (test, result_id))
    return None if row is None else list(json.loads(row.values))


COMPARISON_COLUMNS = (
    "test",
    "result_id",
    "analysis_id",
    "space_a",
    "space_b",
    "n_concepts",
    "similarity",
    "metric",
    "statistic",
    "n_pairs",
    "p_value",
    "p_fdr",
    "n_permutations",
    "seed",
    "bootstrap",
    "bootstrap_seed",
    "analysis_version",
    "null_mean",
    "null_q95",
    "ci_low",
    "ci_high",
)


def comparison_table(rows: Sequence[ComparisonRow], p_fdr: families.FDR | None = None) -> pa.Table:
    """Stored comparison rows as one Arrow table (every measure side by side).

    ``p_fdr`` maps (test, result_id) to a sweep's FDR-adjusted p-value; without it (a single
    comparison) the column is null, since FDR belongs to a sweep's family.
    """
    records = [
        {
            "test": row.measure,
            "result_id": row.result_id,
            "analysis_id": row.analysis_id,
            "space_a": row.space_a,
            "space_b": row.space_b,
            "n_concepts": row.n_concepts,
            "similarity": row.similarity,
            "metric": row.variant,
            "statistic": row.statistic,
            "n_pairs": row.n_pairs,
            "p_value": row.p_value,
            "p_fdr": families.p_fdr_of(p_fdr, row),
            "n_permutations": row.n_permutations,
            "seed": row.seed,
            "bootstrap": row.bootstrap,
            "bootstrap_seed": row.bootstrap_seed,
            "analysis_version": row.analysis_version,
            "null_mean": row.null_mean,
            "null_q95": row.null_q95,
            "ci_low": row.ci_low,
            "ci_high": row.ci_high,
            "level": row.level or "concept",
            "n_items": row.n_items if row.n_items is not None else row.n_concepts,
            "permute": row.permute,
            "resample": row.resample,
        }
        for row in rows
    ]
    schema = pa.schema(
        [
            ("test", pa.string()),
            ("result_id", pa.int64()),
            ("analysis_id", pa.int64()),
            ("space_a", pa.string()),
            ("space_b", pa.string()),
            ("n_concepts", pa.int64()),
            ("similarity", pa.string()),
            ("metric", pa.string()),
            ("statistic", pa.float64()),
            ("n_pairs", pa.int64()),
            ("p_value", pa.float64()),
            ("p_fdr", pa.float64()),
            ("n_permutations", pa.int64()),
            ("seed", pa.int64()),
            ("bootstrap", pa.int64()),
            ("bootstrap_seed", pa.int64()),
            ("analysis_version", pa.int64()),
            ("null_mean", pa.float64()),
            ("null_q95", pa.float64()),
            ("ci_low", pa.float64()),
            ("ci_high", pa.float64()),
            ("level", pa.string()),
            ("n_items", pa.int64()),
            ("permute", pa.string()),
            ("resample", pa.string()),
        ]
    )
    return pa.Table.from_pylist(records, schema=schema)


def vertical(table: pa.Table) -> pa.Table:
    """One row as a two-column (field, value) table that fits a terminal."""
    row = table.to_pylist()[0] if table.num_rows else {}
    return pa.table(
        {
            "field": list(row),
            "value": [
                "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
                for v in row.values()
            ],
        }
    )


SUMMARY_COLUMNS = ("result_id", "test", "space_a", "space_b", "statistic", "p_value", "p_fdr")


def summary_table(table: pa.Table, columns: Sequence[str] = SUMMARY_COLUMNS) -> pa.Table:
    """The columns of a results table worth a glance (the rest stay in the warehouse)."""
    return table.select([c for c in columns if c in table.column_names])
